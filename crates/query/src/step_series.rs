//! `step_series(start_ns, value, origin_ns, step_ns, divisor, q1, q2, …)`:
//! one series of a TraceQL metrics query, computed in one pass.
//!
//! The spans are bucketed by step, `(start_ns − origin_ns) / step_ns`
//! (truncating, as the SQL `/` does), and each step gets its span count, the
//! largest `value` (the exemplar key, as it is: nanoseconds for durations)
//! with the earliest start of the spans that have it (so the exemplar does
//! not depend on the order spans are read in), and the exact quantiles of
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
use arrow::buffer::{NullBuffer, OffsetBuffer};
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

use crate::quantiles::{quantiles_by, quantiles_of_scaled};

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

/// The type values of a `value` argument of type `ty` are kept in (and
/// passed between partial and final aggregates as): integers stay integers.
fn kept_type(ty: Option<&DataType>) -> DataType {
    match ty {
        Some(DataType::Int64) => DataType::Int64,
        _ => DataType::Float64,
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
        let kept = kept_type(args.expr_fields.get(1).map(|f| f.data_type()));
        Ok(Box::new(StepSeriesAccumulator {
            integers: kept == DataType::Int64,
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
            field(
                "values",
                kept_type(args.input_fields.get(1).map(|f| f.data_type())),
            ),
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
    /// The largest key and the earliest start of its spans; `x_start` is
    /// `i64::MIN` while no key was seen.
    x: f64,
    x_start: i64,
    /// The values, as read: integers from an integer column (durations),
    /// else floats (and whatever merged states bring).
    ints: Vec<i64>,
    floats: Vec<f64>,
}

impl Bucket {
    fn new() -> Self {
        Self {
            x_start: i64::MIN,
            ..Default::default()
        }
    }

    fn offer(&mut self, x: f64, start: i64) {
        if self.x_start == i64::MIN || x > self.x || (x == self.x && start < self.x_start) {
            self.x = x;
            self.x_start = start;
        }
    }

    /// Every value as a float, in one list.
    fn floats(&mut self) -> &mut Vec<f64> {
        let ints = std::mem::take(&mut self.ints);
        self.floats.extend(ints.into_iter().map(|v| v as f64));
        &mut self.floats
    }
}

/// A value column's element type, and where a bucket keeps it.
trait Value: Copy {
    fn to_f64(self) -> f64;
    fn kept(bucket: &mut Bucket) -> &mut Vec<Self>;
}

impl Value for i64 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn kept(bucket: &mut Bucket) -> &mut Vec<Self> {
        &mut bucket.ints
    }
}

impl Value for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn kept(bucket: &mut Bucket) -> &mut Vec<Self> {
        &mut bucket.floats
    }
}

#[derive(Debug)]
struct StepSeriesAccumulator {
    /// Whether the values are integers, kept and passed on as such.
    integers: bool,
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

    /// The step of `start`, with its bucket made, and the step's bounds
    /// `[low, high)`.
    fn step_of(&mut self, start: i64) -> Result<(usize, i64, i64)> {
        let step = start.checked_sub(self.origin).map_or(-1, |d| d / self.step);
        self.bucket(step)?;
        let low = self.origin + step * self.step;
        Ok((step as usize, low, low.saturating_add(self.step)))
    }

    /// Adds the rows of a batch. Without nulls, rows are taken in runs of one
    /// step (spans arrive about in time order, so a batch is a few runs):
    /// per run one count, one scan for the largest value, one copy.
    fn update<T: Value>(
        &mut self,
        starts: &Int64Array,
        values: &[T],
        valid: Option<&NullBuffer>,
    ) -> Result<()> {
        let keep = !self.fractions.is_empty();
        let starts_valid = starts.nulls();
        let starts = starts.values();
        // The current step and its bounds [low, high).
        let (mut current, mut low, mut high) = (0usize, i64::MAX, i64::MIN);
        if starts_valid.is_none() && valid.is_none() {
            let mut row = 0;
            while row < starts.len() {
                let start = starts[row];
                if !(low..high).contains(&start) {
                    (current, low, high) = self.step_of(start)?;
                }
                let end = row
                    + 1
                    + starts[row + 1..]
                        .iter()
                        .take_while(|s| (low..high).contains(*s))
                        .count();
                let run = &values[row..end];
                let run_starts = &starts[row..end];
                // The largest value (compared as floats) and its earliest start.
                let (mut best, mut best_start) = (run[0].to_f64(), run_starts[0]);
                for (v, &start) in run.iter().zip(run_starts).skip(1) {
                    let v = v.to_f64();
                    if v > best || (v == best && start < best_start) {
                        (best, best_start) = (v, start);
                    }
                }
                let bucket = &mut self.buckets[current];
                bucket.n += run.len() as i64;
                bucket.offer(best, best_start);
                if keep {
                    T::kept(bucket).extend_from_slice(run);
                    self.values += run.len();
                }
                row = end;
            }
            return Ok(());
        }
        for (row, &start) in starts.iter().enumerate() {
            if starts_valid.is_some_and(|n| n.is_null(row)) {
                continue;
            }
            if !(low..high).contains(&start) {
                (current, low, high) = self.step_of(start)?;
            }
            let bucket = &mut self.buckets[current];
            bucket.n += 1;
            if valid.is_none_or(|n| n.is_valid(row)) {
                let value = values[row];
                bucket.offer(value.to_f64(), start);
                if keep {
                    T::kept(bucket).push(value);
                    self.values += 1;
                }
            }
        }
        Ok(())
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
        if columns[1].data_type() == &DataType::Int64 {
            let values = columns[1].as_primitive::<Int64Type>();
            return self.update(starts, values.values(), values.nulls());
        }
        let values = as_f64(&columns[1])?;
        self.update(starts, values.values(), values.nulls())
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
                quantiles.extend(if bucket.floats.is_empty() {
                    quantiles_by(
                        &mut bucket.ints,
                        &self.fractions,
                        self.divisor,
                        i64::cmp,
                        |v| v as f64,
                    )
                } else {
                    quantiles_of_scaled(bucket.floats(), &self.fractions, self.divisor)
                });
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
        let mut ints = Vec::with_capacity(if self.integers { self.values } else { 0 });
        let mut floats = Vec::with_capacity(if self.integers { 0 } else { self.values });
        for (step, bucket) in self.buckets.iter_mut().enumerate() {
            if bucket.n == 0 {
                continue;
            }
            steps.push(step as i64);
            counts.push(bucket.n);
            xs.push(bucket.x);
            x_starts.push(bucket.x_start);
            if self.integers {
                if !bucket.floats.is_empty() {
                    return exec_err!("step_series: float values in an integer series");
                }
                lengths.push(bucket.ints.len() as i64);
                ints.extend_from_slice(&bucket.ints);
            } else {
                let kept = bucket.floats();
                lengths.push(kept.len() as i64);
                floats.extend_from_slice(kept);
            }
        }
        self.buckets.clear();
        self.values = 0;
        let values: ArrayRef = if self.integers {
            Arc::new(Int64Array::from(ints))
        } else {
            Arc::new(Float64Array::from(floats))
        };
        Ok(vec![
            one_list(Arc::new(Int64Array::from(steps))),
            one_list(Arc::new(Int64Array::from(counts))),
            one_list(Arc::new(Float64Array::from(xs))),
            one_list(Arc::new(Int64Array::from(x_starts))),
            one_list(Arc::new(Int64Array::from(lengths))),
            one_list(values),
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
            let (ints, floats) = match values.data_type() {
                DataType::Int64 => (
                    values.as_primitive::<Int64Type>().values().as_ref(),
                    &[][..],
                ),
                _ => (
                    &[][..],
                    values.as_primitive::<Float64Type>().values().as_ref(),
                ),
            };
            let mut offset = 0usize;
            for i in 0..steps.len() {
                let length = lengths.value(i) as usize;
                let bucket = self.bucket(steps.value(i))?;
                bucket.n += counts.value(i);
                if x_starts.value(i) != i64::MIN {
                    bucket.offer(xs.value(i), x_starts.value(i));
                }
                let range = offset..offset + length;
                match (ints.get(range.clone()), floats.get(range)) {
                    (Some(part), _) if !ints.is_empty() => bucket.ints.extend_from_slice(part),
                    (_, Some(part)) => bucket.floats.extend_from_slice(part),
                    _ => return exec_err!("step_series: state values out of range"),
                }
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
        // Starts out of order, repeated keys (the earliest span with the
        // largest key is its exemplar), NULL values counted but not measured.
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
        // The exemplar start: the earliest span with the step's largest value.
        let earliest = ctx
            .sql(
                "SELECT min(a.start) FROM (SELECT (start - 1000) / 60 AS step, start, v FROM t) a \
                 JOIN (SELECT (start - 1000) / 60 AS step, max(v) AS m FROM t GROUP BY 1) b \
                   ON a.step = b.step AND a.v = b.m GROUP BY a.step ORDER BY a.step",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let earliest = arrow::compute::concat_batches(&earliest[0].schema(), &earliest).unwrap();
        assert_eq!(field("x_start").as_ref(), earliest.column(0).as_ref());
    }

    /// Partial states merged in any split give what one accumulator gives.
    #[test]
    fn merged_states_equal_one_pass() {
        let accumulator = || StepSeriesAccumulator {
            integers: false,
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

    /// Integer values (kept as integers, taken in runs) give bit for bit what
    /// the same values as floats give, nulls and out-of-order starts included.
    #[test]
    fn integer_values_agree_with_their_floats() {
        let accumulator = |integers| StepSeriesAccumulator {
            integers,
            origin: 1_000,
            step: 100,
            divisor: 1e9,
            fractions: vec![0.5, 0.9, 0.99],
            buckets: Vec::new(),
            values: 0,
        };
        // Mostly ascending starts with jitter, so runs end at step bounds and
        // at rows that go back a step; repeated maxima.
        let starts: Vec<i64> = (0..2_000)
            .map(|i| 2_000 + i * 3 - if i % 17 == 0 { 150 } else { 0 })
            .collect();
        let values: Vec<i64> = (0..2_000)
            .map(|i| (i * 7_919) % 1_009 * 1_000_003)
            .collect();
        let nulls: Vec<Option<i64>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (i % 23 != 0).then_some(*v))
            .collect();
        for ints in [Int64Array::from(values), Int64Array::from(nulls)] {
            let floats: ArrayRef = Arc::new(
                ints.iter()
                    .map(|v| v.map(|v| v as f64))
                    .collect::<Float64Array>(),
            );
            let starts: ArrayRef = Arc::new(Int64Array::from(starts.clone()));
            let (mut a, mut b) = (accumulator(true), accumulator(false));
            let mut partial = accumulator(true);
            for range in [0..700, 700..2_000] {
                let ints: ArrayRef = Arc::new(ints.slice(range.start, range.len()));
                let starts = starts.slice(range.start, range.len());
                a.update_batch(&[Arc::clone(&starts), Arc::clone(&ints)])
                    .unwrap();
                partial.update_batch(&[Arc::clone(&starts), ints]).unwrap();
                b.update_batch(&[starts, floats.slice(range.start, range.len())])
                    .unwrap();
            }
            assert!(a.buckets.iter().any(|b| !b.ints.is_empty()));
            assert!(b.buckets.iter().all(|b| b.ints.is_empty()));
            let expected = b.evaluate().unwrap();
            assert_eq!(a.evaluate().unwrap(), expected);
            // Partial states of integers merge as integers.
            let mut merged = accumulator(true);
            let state = partial.state().unwrap();
            assert_eq!(state[5].data_type(), list_of(DataType::Int64));
            let arrays: Vec<ArrayRef> = state.iter().map(|s| s.to_array().unwrap()).collect();
            merged.merge_batch(&arrays).unwrap();
            assert!(merged.buckets.iter().all(|b| b.floats.is_empty()));
            assert_eq!(merged.evaluate().unwrap(), expected);
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
