//! `step_series(start_ns, value, origin_ns, step_ns, divisor, q1, q2, …)`:
//! one series of a TraceQL metrics query, computed in one pass.
//!
//! The spans are bucketed by step, `(start_ns − origin_ns) / step_ns`
//! (truncating, as the SQL `/` does), and each step gets its span count, the
//! largest `value` (the exemplar key, as it is: nanoseconds for durations)
//! with the start of the first span that has it, and the exact quantiles of
//! `value / divisor` at the constant fractions (the interpolation of
//! [`quantiles`](crate::quantiles), bit for bit what dividing first gives;
//! no values are kept without fractions). The result is one struct of
//! lists, one entry per step that has spans, ascending:
//! `{step: [Int64], n: [Int64], x: [Float64], x_start: [Int64], q: [Float64]}`
//! with `len(fractions)` entries of `q` per step.
//!
//! `GROUP BY key, step` with `count(*)`, `max(value)` and
//! `quantiles(value / divisor, …)` gives the same numbers; it hashes the
//! step of every span and carries each group's values through DataFusion's
//! partial/final states. Here the steps of a batch are mostly one or two
//! (spans arrive in time order), found without a division while the start
//! stays inside the current step's bounds. The constant arguments are bound
//! into the function when the plan is simplified, so they are not expanded
//! into an array per batch as aggregate arguments are.

use std::mem::size_of;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray, RecordBatch, StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, Int64Type, Schema};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::function::{
    AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs,
};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, Expr, Signature, Volatility,
};

use crate::quantiles::quantiles_of_scaled;

/// Most steps one series may have (a day at one-second steps fits).
const MAX_STEPS: i64 = 1 << 20;
/// The column arguments: start and value.
const COLUMNS: usize = 2;

/// The `step_series` aggregate (see the module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StepSeries {
    signature: Signature,
    /// The constant arguments, once bound by `simplify`.
    bound: Option<Constants>,
}

/// origin, step, divisor and fractions (the floats as their bits, for `Eq`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Constants {
    origin: i64,
    step: i64,
    divisor: u64,
    fractions: Vec<u64>,
}

impl Constants {
    fn new(values: &[ScalarValue]) -> Result<Self> {
        if values.len() < 3 {
            return plan_err!(
                "step_series takes start, value, origin, step, divisor and fractions"
            );
        }
        let int = |v: &ScalarValue| match v.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(v)) => Ok(v),
            other => plan_err!("step_series: {other} is not an integer"),
        };
        let float = |v: &ScalarValue| match v.cast_to(&DataType::Float64)? {
            ScalarValue::Float64(Some(v)) => Ok(v),
            other => plan_err!("step_series: {other} is not a number"),
        };
        let (origin, step, divisor) = (int(&values[0])?, int(&values[1])?, float(&values[2])?);
        if step <= 0 {
            return plan_err!("step_series: the step must be positive");
        }
        if !(divisor.is_finite() && divisor > 0.0) {
            return plan_err!("step_series: the divisor must be positive");
        }
        let fractions = values[3..]
            .iter()
            .map(|v| match float(v)? {
                q if (0.0..=1.0).contains(&q) => Ok(q.to_bits()),
                q => plan_err!("step_series: {q} is not a fraction"),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            origin,
            step,
            divisor: divisor.to_bits(),
            fractions,
        })
    }
}

impl StepSeries {
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
            bound: None,
        }
    }
}

impl Default for StepSeries {
    fn default() -> Self {
        Self::new()
    }
}

fn list_of(ty: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", ty, true)))
}

/// The result's fields.
pub fn output_fields() -> Fields {
    Fields::from(vec![
        Field::new("step", list_of(DataType::Int64), true),
        Field::new("n", list_of(DataType::Int64), true),
        Field::new("x", list_of(DataType::Float64), true),
        Field::new("x_start", list_of(DataType::Int64), true),
        Field::new("q", list_of(DataType::Float64), true),
    ])
}

/// The constant arguments of an unbound call, evaluated.
fn constant_arguments(args: &AccumulatorArgs) -> Result<Constants> {
    let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
    let mut values = Vec::new();
    for expr in args.exprs.iter().skip(COLUMNS) {
        match expr.evaluate(&empty) {
            Ok(ColumnarValue::Scalar(value)) => values.push(value),
            _ => {
                return plan_err!(
                    "step_series: origin, step, divisor and fractions must be constants"
                );
            }
        }
    }
    Constants::new(&values)
}

impl AggregateUDFImpl for StepSeries {
    fn name(&self) -> &str {
        "step_series"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let wanted = if self.bound.is_some() {
            COLUMNS
        } else {
            COLUMNS + 3
        };
        if arg_types.len() < wanted {
            return plan_err!(
                "step_series takes start, value, origin, step, divisor and fractions"
            );
        }
        Ok(DataType::Struct(output_fields()))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let constants = match &self.bound {
            Some(bound) => bound.clone(),
            None => constant_arguments(&args)?,
        };
        Ok(Box::new(StepSeriesAccumulator {
            origin: constants.origin,
            step: constants.step,
            divisor: f64::from_bits(constants.divisor),
            fractions: constants
                .fractions
                .iter()
                .map(|q| f64::from_bits(*q))
                .collect(),
            buckets: Vec::new(),
            values: 0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let field = |name: &str, ty: DataType| {
            Arc::new(Field::new(
                format!("{}[{name}]", args.name),
                list_of(ty),
                true,
            ))
        };
        Ok(vec![
            field("step", DataType::Int64),
            field("n", DataType::Int64),
            field("x", DataType::Float64),
            field("x_start", DataType::Int64),
            field("values_per_step", DataType::Int64),
            field("values", DataType::Float64),
        ])
    }

    /// Binds literal constants into the function, leaving the two columns
    /// as its only arguments.
    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        if self.bound.is_some() {
            return None;
        }
        Some(Box::new(|function: AggregateFunction, _| {
            let params = &function.params;
            if params.args.len() < COLUMNS {
                return Ok(Expr::AggregateFunction(function));
            }
            let literals: Option<Vec<ScalarValue>> = params
                .args
                .iter()
                .skip(COLUMNS)
                .map(|arg| match arg {
                    Expr::Literal(value, _) => Some(value.clone()),
                    _ => None,
                })
                .collect();
            // Anything else is reported when the accumulator is made.
            let Some(Ok(constants)) = literals.map(|l| Constants::new(&l)) else {
                return Ok(Expr::AggregateFunction(function));
            };
            let bound = AggregateUDF::from(StepSeries {
                signature: Signature::variadic_any(Volatility::Immutable),
                bound: Some(constants),
            });
            let params = function.params;
            Ok(Expr::AggregateFunction(AggregateFunction::new_udf(
                Arc::new(bound),
                params.args[..COLUMNS].to_vec(),
                params.distinct,
                params.filter,
                params.order_by,
                params.null_treatment,
            )))
        }))
    }
}

#[derive(Debug, Default)]
struct Bucket {
    n: i64,
    /// The largest key and the start of its first span; `x_start` is
    /// `i64::MIN` while no key was seen.
    x: f64,
    x_start: i64,
    values: Vec<f64>,
}

impl Bucket {
    fn new() -> Self {
        Self {
            x_start: i64::MIN,
            ..Default::default()
        }
    }

    fn offer(&mut self, x: f64, start: i64) {
        if self.x_start == i64::MIN || x > self.x {
            self.x = x;
            self.x_start = start;
        }
    }
}

#[derive(Debug)]
struct StepSeriesAccumulator {
    origin: i64,
    step: i64,
    divisor: f64,
    fractions: Vec<f64>,
    /// Indexed by step.
    buckets: Vec<Bucket>,
    /// Values held, for [`Accumulator::size`].
    values: usize,
}

impl StepSeriesAccumulator {
    fn bucket(&mut self, step: i64) -> Result<&mut Bucket> {
        if !(0..MAX_STEPS).contains(&step) {
            return exec_err!("step_series: step {step} is outside 0..{MAX_STEPS}");
        }
        let index = step as usize;
        if index >= self.buckets.len() {
            self.buckets.resize_with(index + 1, Bucket::new);
        }
        Ok(&mut self.buckets[index])
    }
}

fn as_f64(array: &ArrayRef) -> Result<Float64Array> {
    Ok(cast(array, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

fn list(values: ArrayRef, lengths: impl IntoIterator<Item = usize>) -> ArrayRef {
    let field = Arc::new(Field::new("item", values.data_type().clone(), true));
    Arc::new(ListArray::new(
        field,
        OffsetBuffer::from_lengths(lengths),
        values,
        None,
    ))
}

fn one_list(values: ArrayRef) -> ScalarValue {
    let n = values.len();
    ScalarValue::List(Arc::new(list(values, [n]).as_list::<i32>().clone()))
}

impl Accumulator for StepSeriesAccumulator {
    fn update_batch(&mut self, columns: &[ArrayRef]) -> Result<()> {
        let starts = cast(&columns[0], &DataType::Int64)?;
        let starts = starts.as_primitive::<Int64Type>();
        let values = as_f64(&columns[1])?;
        let keep = !self.fractions.is_empty();
        let (origin, width) = (self.origin, self.step);
        // The current step and its bounds [low, high).
        let (mut current, mut low, mut high) = (0usize, i64::MAX, i64::MIN);
        for row in 0..starts.len() {
            if starts.is_null(row) {
                continue;
            }
            let start = starts.value(row);
            if !(low..high).contains(&start) {
                let step = start.checked_sub(origin).map_or(-1, |d| d / width);
                self.bucket(step)?;
                current = step as usize;
                low = origin + step * width;
                high = low.saturating_add(width);
            }
            let bucket = &mut self.buckets[current];
            bucket.n += 1;
            if values.is_valid(row) {
                let value = values.value(row);
                bucket.offer(value, start);
                if keep {
                    bucket.values.push(value);
                    self.values += 1;
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut steps = Vec::new();
        let mut counts = Vec::new();
        let mut xs = Vec::new();
        let mut x_starts = Vec::new();
        let mut quantiles = Vec::new();
        for (step, bucket) in self.buckets.iter_mut().enumerate() {
            if bucket.n == 0 {
                continue;
            }
            steps.push(step as i64);
            counts.push(bucket.n);
            let seen = bucket.x_start != i64::MIN;
            xs.push(seen.then_some(bucket.x));
            x_starts.push(seen.then_some(bucket.x_start));
            if !self.fractions.is_empty() {
                quantiles.extend(quantiles_of_scaled(
                    &mut bucket.values,
                    &self.fractions,
                    self.divisor,
                ));
            }
        }
        let columns: Vec<ArrayRef> = vec![
            list(Arc::new(Int64Array::from(steps)), [counts.len()]),
            list(Arc::new(Int64Array::from(counts.clone())), [counts.len()]),
            list(Arc::new(Float64Array::from(xs)), [counts.len()]),
            list(Arc::new(Int64Array::from(x_starts)), [counts.len()]),
            list(
                Arc::new(Float64Array::from(quantiles)),
                [counts.len() * self.fractions.len()],
            ),
        ];
        let array = StructArray::try_new(output_fields(), columns, None)?;
        ScalarValue::try_from_array(&array, 0)
    }

    fn size(&self) -> usize {
        size_of::<Self>()
            + self.buckets.capacity() * size_of::<Bucket>()
            + self.values * size_of::<f64>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut steps = Vec::new();
        let mut counts = Vec::new();
        let mut xs = Vec::new();
        let mut x_starts = Vec::new();
        let mut lengths = Vec::new();
        let mut values = Vec::with_capacity(self.values);
        for (step, bucket) in self.buckets.iter_mut().enumerate() {
            if bucket.n == 0 {
                continue;
            }
            steps.push(step as i64);
            counts.push(bucket.n);
            xs.push(bucket.x);
            x_starts.push(bucket.x_start);
            lengths.push(bucket.values.len() as i64);
            values.extend_from_slice(&bucket.values);
            bucket.values = Vec::new();
        }
        self.buckets.clear();
        self.values = 0;
        Ok(vec![
            one_list(Arc::new(Int64Array::from(steps))),
            one_list(Arc::new(Int64Array::from(counts))),
            one_list(Arc::new(Float64Array::from(xs))),
            one_list(Arc::new(Int64Array::from(x_starts))),
            one_list(Arc::new(Int64Array::from(lengths))),
            one_list(Arc::new(Float64Array::from(values))),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists: Vec<&ListArray> = states.iter().map(|s| s.as_list::<i32>()).collect();
        if lists.len() != 6 {
            return exec_err!("step_series: unexpected state");
        }
        for row in 0..lists[0].len() {
            if lists[0].is_null(row) {
                continue;
            }
            let column = |i: usize| lists[i].value(row);
            let steps = column(0);
            let counts = column(1);
            let xs = column(2);
            let x_starts = column(3);
            let lengths = column(4);
            let values = column(5);
            let steps = steps.as_primitive::<Int64Type>();
            let counts = counts.as_primitive::<Int64Type>();
            let xs = xs.as_primitive::<Float64Type>();
            let x_starts = x_starts.as_primitive::<Int64Type>();
            let lengths = lengths.as_primitive::<Int64Type>();
            let values = values.as_primitive::<Float64Type>().values();
            let mut offset = 0usize;
            for i in 0..steps.len() {
                let length = lengths.value(i) as usize;
                let bucket = self.bucket(steps.value(i))?;
                bucket.n += counts.value(i);
                if x_starts.value(i) != i64::MIN {
                    bucket.offer(xs.value(i), x_starts.value(i));
                }
                let Some(part) = values.get(offset..offset + length) else {
                    return exec_err!("step_series: state values out of range");
                };
                bucket.values.extend_from_slice(part);
                offset += length;
                self.values += length;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    /// `step_series` and the `GROUP BY step` it replaces give the same rows,
    /// with partial states merged across partitions.
    #[tokio::test]
    async fn agrees_with_group_by_step() {
        let ctx = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new()
                .with_target_partitions(3)
                .with_batch_size(7),
        );
        ctx.register_udaf(datafusion::logical_expr::AggregateUDF::from(
            StepSeries::new(),
        ));
        ctx.register_udaf(datafusion::logical_expr::AggregateUDF::from(
            crate::quantiles::Quantiles::new(),
        ));
        // Starts out of order, repeated keys (the first span with the largest
        // key is its exemplar), NULL values counted but not measured.
        let mut rows = Vec::new();
        for i in 0..200i64 {
            let start = 1_000 + (i * 7919) % 1_000;
            let value = if i % 13 == 0 {
                "NULL".to_owned()
            } else {
                ((i * 31) % 97).to_string()
            };
            rows.push(format!("({start}, {value})"));
        }
        ctx.sql(&format!(
            "CREATE TABLE t (start BIGINT, v BIGINT) AS VALUES {}",
            rows.join(", ")
        ))
        .await
        .unwrap();
        let expected = ctx
            .sql(
                "SELECT (start - 1000) / 60 AS step, count(*) AS n, max(v) AS x, \
                   quantiles(CAST(v AS DOUBLE) / 4, 0.5, 0.9) AS q FROM t GROUP BY step ORDER BY step",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let got = ctx
            .sql(
                "SELECT step_series(start, v, 1000, 60, 4, 0.5, 0.9) AS s \
                 FROM (SELECT * FROM t ORDER BY v)",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        // The constants are bound into the function: two arguments remain.
        let plan = ctx
            .sql("EXPLAIN SELECT step_series(start, v, 1000, 60, 4, 0.5) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let plan = arrow::util::pretty::pretty_format_batches(&plan)
            .unwrap()
            .to_string();
        assert!(
            plan.contains("aggr=[[step_series(t.start, t.v) AS "),
            "{plan}"
        );
        let expected = arrow::compute::concat_batches(&expected[0].schema(), &expected).unwrap();
        let row = got[0].column(0).as_struct();
        let field = |name: &str| row.column_by_name(name).unwrap().as_list::<i32>().value(0);
        let steps = field("step");
        let counts = field("n");
        let xs = field("x");
        let quantiles = field("q");
        assert_eq!(steps.as_ref(), expected.column(0).as_ref());
        assert_eq!(counts.as_ref(), expected.column(1).as_ref());
        let x = cast(expected.column(2), &DataType::Float64).unwrap();
        assert_eq!(xs.as_ref(), x.as_ref());
        let q = expected.column(3).as_list::<i32>().values().clone();
        assert_eq!(quantiles.as_ref(), q.as_ref());
        // The exemplar start: the earliest-seen span with the step's largest
        // value is a span of that step with that value.
        let x_starts = field("x_start");
        let x_starts = x_starts.as_primitive::<Int64Type>();
        for i in 0..steps.len() {
            let start = x_starts.value(i);
            assert_eq!(
                (start - 1000) / 60,
                steps.as_primitive::<Int64Type>().value(i)
            );
        }
    }

    /// Partial states merged in any split give what one accumulator gives.
    #[test]
    fn merged_states_equal_one_pass() {
        let accumulator = || StepSeriesAccumulator {
            origin: 100,
            step: 10,
            divisor: 1e9,
            fractions: vec![0.25, 0.5, 1.0],
            buckets: Vec::new(),
            values: 0,
        };
        let starts: Vec<i64> = (0..300).map(|i| 100 + (i * 37) % 250).collect();
        let values: Vec<Option<f64>> = (0..300)
            .map(|i| (i % 11 != 0).then_some(((i * 53) % 101) as f64))
            .collect();
        let columns = |range: std::ops::Range<usize>| -> Vec<ArrayRef> {
            let v: ArrayRef = Arc::new(Float64Array::from(values[range.clone()].to_vec()));
            vec![Arc::new(Int64Array::from(starts[range].to_vec())), v]
        };
        let mut whole = accumulator();
        whole.update_batch(&columns(0..300)).unwrap();
        let expected = whole.evaluate().unwrap();
        for split in [0, 1, 150, 299] {
            let (mut a, mut b) = (accumulator(), accumulator());
            a.update_batch(&columns(0..split)).unwrap();
            b.update_batch(&columns(split..300)).unwrap();
            let states: Vec<Vec<ScalarValue>> = vec![a.state().unwrap(), b.state().unwrap()];
            let arrays: Vec<ArrayRef> = (0..6)
                .map(|i| ScalarValue::iter_to_array(states.iter().map(|s| s[i].clone())).unwrap())
                .collect();
            let mut merged = accumulator();
            merged.merge_batch(&arrays).unwrap();
            assert_eq!(merged.evaluate().unwrap(), expected, "split at {split}");
        }
    }

    #[tokio::test]
    async fn refuses_bad_constants_and_steps_before_the_origin() {
        let ctx = SessionContext::new();
        ctx.register_udaf(datafusion::logical_expr::AggregateUDF::from(
            StepSeries::new(),
        ));
        let run = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                match ctx.sql(sql).await {
                    Ok(df) => df.collect().await.map(|_| ()),
                    Err(e) => Err(e),
                }
            }
        };
        let err = run("SELECT step_series(5, 1, 0, 0, 1)").await.unwrap_err();
        assert!(err.to_string().contains("step must be positive"), "{err}");
        let err = run("SELECT step_series(5, 1, 0, 10, 1, 2.0)")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a fraction"), "{err}");
        let err = run("SELECT step_series(-50, 1, 0, 10, 1)")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        let err = run("SELECT step_series(5, 1, 0, 10, 0)").await.unwrap_err();
        assert!(
            err.to_string().contains("divisor must be positive"),
            "{err}"
        );
        run("SELECT step_series(50, 1, 0, 10, 1)").await.unwrap();
    }
}
