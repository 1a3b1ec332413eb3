//! `quantiles(value, q1, q2, …)`: exact quantiles of a group, all from one copy
//! of its values.
//!
//! Each `q` is a constant in [0, 1]; the result is a `List(Float64)` with one
//! value per `q`, in argument order: the linear interpolation between the two
//! nearest ranks at position `q · (n − 1)` (DuckDB's `quantile_cont`,
//! PostgreSQL's `percentile_cont`), NULL for a group without values. Nulls are
//! skipped. DataFusion's `percentile_cont` keeps a copy of the values per
//! percentile and quantizes the interpolation weight to 1e-6; this keeps one
//! copy, selects the ranks in ascending order on shrinking slices, and
//! interpolates exactly. The `latency` and `service-graph` reports use it.
//!
//! ```sql
//! SELECT service_name, q[1] / 1e6 AS p50_ms, q[2] / 1e6 AS p99_ms
//! FROM (SELECT service_name, quantiles(duration_ns, 0.5, 0.99) AS q
//!       FROM spans GROUP BY service_name);
//! ```

use std::mem::size_of;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, Float64Array, Float64Builder,
    ListArray, ListBuilder, PrimitiveArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// The `quantiles` aggregate (see the module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Quantiles {
    signature: Signature,
}

impl Quantiles {
    pub fn new() -> Self {
        Quantiles {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl Default for Quantiles {
    fn default() -> Self {
        Self::new()
    }
}

fn list_of_f64() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Float64, true)))
}

/// The constant fractions of `args` (every argument after the first).
fn fractions(args: &AccumulatorArgs) -> Result<Vec<f64>> {
    let empty = arrow::array::RecordBatch::new_empty(Arc::new(arrow::datatypes::Schema::empty()));
    args.exprs[1..]
        .iter()
        .map(|expr| {
            let value = match expr.evaluate(&empty) {
                Ok(ColumnarValue::Scalar(value)) => value,
                _ => return plan_err!("quantiles: each fraction must be a constant"),
            };
            let q = match value.cast_to(&DataType::Float64)? {
                ScalarValue::Float64(Some(q)) => q,
                other => return plan_err!("quantiles: {other} is not a fraction"),
            };
            if !(0.0..=1.0).contains(&q) {
                return plan_err!("quantiles: {q} is not between 0 and 1");
            }
            Ok(q)
        })
        .collect()
}

impl AggregateUDFImpl for Quantiles {
    fn name(&self) -> &str {
        "quantiles"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.len() < 2 {
            return plan_err!("quantiles takes a value and at least one fraction");
        }
        if !arg_types[0].is_numeric() && !matches!(arg_types[0], DataType::Null) {
            return plan_err!(
                "quantiles: the value must be a number, not {}",
                arg_types[0]
            );
        }
        Ok(list_of_f64())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(QuantilesAccumulator {
            inner: QuantilesGroups::new(fractions(&args)?),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[values]", args.name),
            list_of_f64(),
            true,
        ))])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(QuantilesGroups::new(fractions(&args)?)))
    }
}

/// The values of each group.
#[derive(Debug)]
struct QuantilesGroups {
    fractions: Vec<f64>,
    /// Per group, the values `update_batch` added.
    groups: Vec<Vec<f64>>,
    /// Per group, the parts of merged partial states: slices of the states'
    /// arrays, kept instead of copied. A final aggregation receives every value
    /// of the query here; they are copied once, into one exactly sized vector
    /// per group, when it is evaluated ([`Self::settle`]).
    merged: Vec<Vec<Float64Array>>,
    /// How many values `merged` holds, for [`GroupsAccumulator::size`].
    merged_values: usize,
}

impl QuantilesGroups {
    fn new(fractions: Vec<f64>) -> Self {
        QuantilesGroups {
            fractions,
            groups: Vec::new(),
            merged: Vec::new(),
            merged_values: 0,
        }
    }

    fn resize(&mut self, total_num_groups: usize) {
        self.groups.resize_with(total_num_groups, Vec::new);
        self.merged.resize_with(total_num_groups, Vec::new);
    }

    /// Moves the merged parts of every group into its values.
    fn settle(&mut self) {
        for (values, parts) in self.groups.iter_mut().zip(&mut self.merged) {
            if parts.is_empty() {
                continue;
            }
            values.reserve_exact(parts.iter().map(Array::len).sum());
            for part in parts.drain(..) {
                values.extend_from_slice(part.values());
            }
        }
        self.merged_values = 0;
    }

    /// Appends each row's value to its group's values: `group_indices[row]`,
    /// for rows `opt_filter` keeps; nulls are skipped.
    fn push<T: ArrowPrimitiveType>(
        &mut self,
        values: &PrimitiveArray<T>,
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        to_f64: impl Fn(T::Native) -> f64,
    ) {
        if values.null_count() == 0 && opt_filter.is_none() {
            // The common case, without a per-row check (the scan's rows, no FILTER).
            for (&value, &group) in values.values().iter().zip(group_indices) {
                self.groups[group].push(to_f64(value));
            }
            return;
        }
        for (row, &group) in group_indices.iter().enumerate().take(values.len()) {
            let keep =
                values.is_valid(row) && opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
            if keep {
                self.groups[group].push(to_f64(values.value(row)));
            }
        }
    }

    fn take(&mut self, emit_to: EmitTo) -> Vec<Vec<f64>> {
        self.settle();
        emit_to.take_needed(&mut self.merged);
        emit_to.take_needed(&mut self.groups)
    }
}

fn as_f64(array: &ArrayRef) -> Result<Float64Array> {
    Ok(cast(array, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

/// The quantiles of `values` (reordered in place) at `fractions`.
pub(crate) fn quantiles_of(values: &mut [f64], fractions: &[f64]) -> Vec<Option<f64>> {
    quantiles_of_scaled(values, fractions, 1.0)
}

/// [`quantiles_of`] of `values / divisor`: the ranks are selected on the
/// values as they are and divided before the interpolation, which gives
/// exactly what dividing every value first would (division is monotonic).
pub(crate) fn quantiles_of_scaled(
    values: &mut [f64],
    fractions: &[f64],
    divisor: f64,
) -> Vec<Option<f64>> {
    quantiles_by(values, fractions, divisor, f64::total_cmp, |v| v)
}

/// [`quantiles_of_scaled`] of values kept in another type: ranks are selected
/// by `order`, and the selected values become `f64` by `to_f64` before the
/// division and the interpolation. For a `to_f64` that never reverses `order`
/// (as `i64 as f64`), that is bit for bit [`quantiles_of_scaled`] of the
/// converted values: the k-th smallest converted value is the conversion of
/// the k-th smallest value.
pub(crate) fn quantiles_by<T: Copy>(
    values: &mut [T],
    fractions: &[f64],
    divisor: f64,
    order: impl Fn(&T, &T) -> std::cmp::Ordering + Copy,
    to_f64: impl Fn(T) -> f64,
) -> Vec<Option<f64>> {
    if values.is_empty() {
        return vec![None; fractions.len()];
    }
    let last = values.len() - 1;
    // Ascending positions, so each selection works on what is right of the last.
    let mut ranks: Vec<usize> = (0..fractions.len()).collect();
    ranks.sort_by(|&a, &b| fractions[a].total_cmp(&fractions[b]));
    let mut result = vec![None; fractions.len()];
    let mut done = 0; // values[..done] are in their final places
    let mut at = |values: &mut [T], rank: usize| -> f64 {
        if rank >= done {
            values[done..].select_nth_unstable_by(rank - done, order);
            done = rank + 1;
        }
        to_f64(values[rank])
    };
    for index in ranks {
        let position = fractions[index] * last as f64;
        let lower = (position.floor() as usize).min(last);
        let upper = (position.ceil() as usize).min(last);
        let low = at(values, lower) / divisor;
        let high = if upper == lower {
            low
        } else {
            at(values, upper) / divisor
        };
        let weight = position - lower as f64;
        result[index] = Some(low + (high - low) * weight);
    }
    result
}

fn quantile_lists(groups: &mut [Vec<f64>], fractions: &[f64]) -> ArrayRef {
    let mut builder = ListBuilder::with_capacity(
        Float64Builder::with_capacity(groups.len() * fractions.len()),
        groups.len(),
    );
    for values in groups.iter_mut() {
        if values.is_empty() {
            builder.append_null();
        } else {
            builder.values().extend(quantiles_of(values, fractions));
            builder.append(true);
        }
    }
    Arc::new(builder.finish())
}

fn state_list(groups: Vec<Vec<f64>>) -> ArrayRef {
    let offsets = OffsetBuffer::from_lengths(groups.iter().map(Vec::len));
    let mut values = Vec::with_capacity(groups.iter().map(Vec::len).sum());
    for group in &groups {
        values.extend_from_slice(group);
    }
    Arc::new(ListArray::new(
        Arc::new(Field::new("item", DataType::Float64, true)),
        offsets,
        Arc::new(Float64Array::from(values)),
        None,
    ))
}

fn merge_lists(
    inner: &mut QuantilesGroups,
    states: &[ArrayRef],
    mut group_of: impl FnMut(usize) -> usize,
) -> Result<()> {
    let Some(list) = states.first().and_then(|s| s.as_list_opt::<i32>()) else {
        return exec_err!("quantiles: the state must be a list");
    };
    let values = as_f64(list.values())?;
    let offsets = list.value_offsets();
    for row in 0..list.len() {
        if list.is_null(row) {
            continue;
        }
        let group = group_of(row);
        let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
        if from == to {
            continue;
        }
        let part = values.slice(from, to - from);
        if part.null_count() == 0 {
            inner.merged_values += part.len();
            inner.merged[group].push(part);
        } else {
            inner.groups[group].extend(part.iter().flatten());
        }
    }
    Ok(())
}

impl GroupsAccumulator for QuantilesGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        // Durations are Int64: converted row by row instead of through a cast
        // array. `as f64` is what the cast does.
        if let Some(values) = values[0].as_primitive_opt::<Int64Type>() {
            self.push(values, group_indices, opt_filter, |v| v as f64);
        } else {
            let values = as_f64(&values[0])?;
            self.push(&values, group_indices, opt_filter, |v| v);
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let mut groups = self.take(emit_to);
        Ok(quantile_lists(&mut groups, &self.fractions))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![state_list(self.take(emit_to))])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        merge_lists(self, values, |row| group_indices[row])
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let values = as_f64(&values[0])?;
        let groups: Vec<Vec<f64>> = (0..values.len())
            .map(|row| {
                let keep = !values.is_null(row)
                    && opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
                if keep {
                    vec![values.value(row)]
                } else {
                    Vec::new()
                }
            })
            .collect();
        Ok(vec![state_list(groups)])
    }

    fn size(&self) -> usize {
        size_of::<Self>()
            + self.groups.capacity() * size_of::<Vec<f64>>()
            + self
                .groups
                .iter()
                .map(|g| g.capacity() * size_of::<f64>())
                .sum::<usize>()
            + self.merged.capacity() * size_of::<Vec<Float64Array>>()
            + self
                .merged
                .iter()
                .map(|parts| parts.capacity() * size_of::<Float64Array>())
                .sum::<usize>()
            + self.merged_values * size_of::<f64>()
    }
}

/// One group's quantiles (no GROUP BY).
#[derive(Debug)]
struct QuantilesAccumulator {
    inner: QuantilesGroups,
}

impl Accumulator for QuantilesAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values[0].len();
        GroupsAccumulator::update_batch(&mut self.inner, values, &vec![0; rows], None, 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.inner.resize(1);
        self.inner.settle();
        let list = quantile_lists(&mut self.inner.groups, &self.inner.fractions);
        ScalarValue::try_from_array(&list, 0)
    }

    fn size(&self) -> usize {
        GroupsAccumulator::size(&self.inner)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.resize(1);
        self.inner.settle();
        let list = state_list(vec![self.inner.groups[0].clone()]);
        Ok(vec![ScalarValue::try_from_array(&list, 0)?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.resize(1);
        merge_lists(&mut self.inner, states, |_| 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DuckDB's quantile_cont, written out.
    fn reference(values: &[f64], q: f64) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let position = q * (sorted.len() - 1) as f64;
        let (lower, upper) = (position.floor() as usize, position.ceil() as usize);
        sorted[lower] + (sorted[upper] - sorted[lower]) * (position - lower as f64)
    }

    #[test]
    fn quantiles_interpolate_between_the_nearest_ranks() {
        let fractions = [0.99, 0.5, 0.0, 1.0, 0.9, 0.95, 0.25];
        for n in [1usize, 2, 3, 10, 101, 1000] {
            let values: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1013) as f64 * 1.5).collect();
            let mut scratch = values.clone();
            let got = quantiles_of(&mut scratch, &fractions);
            for (q, value) in fractions.iter().zip(got) {
                assert_eq!(value, Some(reference(&values, *q)), "n={n} q={q}");
            }
        }
        assert_eq!(quantiles_of(&mut [], &[0.5]), vec![None]);
    }

    /// Int64 and Float64 input, with and without nulls and a FILTER, through a
    /// partial state and a merge: every path must put each value in its group.
    #[test]
    fn groups_get_their_own_values_through_state_and_merge() {
        use arrow::array::Int64Array;

        let fractions = vec![0.0, 0.5, 0.9, 1.0];
        let rows = 1000usize;
        let value = |row: usize| ((row * 7919) % 1013) as i64 - 300;
        let group_of = |row: usize| (row * 31) % 7;
        let is_null = |row: usize| row % 11 == 3;
        let filtered_out = |row: usize| row % 5 == 1;
        let groups: Vec<usize> = (0..rows).map(group_of).collect();
        let filter = BooleanArray::from((0..rows).map(|r| !filtered_out(r)).collect::<Vec<_>>());
        for (nulls, filtered) in [(false, false), (true, false), (false, true), (true, true)] {
            let ints = Int64Array::from(
                (0..rows)
                    .map(|r| (!(nulls && is_null(r))).then(|| value(r)))
                    .collect::<Vec<_>>(),
            );
            let floats: ArrayRef = cast(&ints, &DataType::Float64).unwrap();
            let ints: ArrayRef = Arc::new(ints);
            let dropped = |r: usize| (nulls && is_null(r)) || (filtered && filtered_out(r));
            let want: Vec<Vec<Option<f64>>> = (0..7)
                .map(|g| {
                    let values: Vec<f64> = (0..rows)
                        .filter(|&r| group_of(r) == g && !dropped(r))
                        .map(|r| value(r) as f64)
                        .collect();
                    fractions
                        .iter()
                        .map(|&q| Some(reference(&values, q)))
                        .collect()
                })
                .collect();
            for input in [&ints, &floats] {
                // Two partial accumulators, each with half of the rows.
                let mut states = Vec::new();
                for half in [0..rows / 2, rows / 2..rows] {
                    let mut partial = QuantilesGroups::new(fractions.clone());
                    let slice = input.slice(half.start, half.len());
                    let filter_slice = filter.slice(half.start, half.len());
                    partial
                        .update_batch(
                            &[slice],
                            &groups[half.clone()],
                            filtered.then_some(&filter_slice),
                            7,
                        )
                        .unwrap();
                    states.push(partial.state(EmitTo::All).unwrap());
                }
                let mut merged = QuantilesGroups::new(fractions.clone());
                for state in &states {
                    merged
                        .merge_batch(state, &(0..7).collect::<Vec<_>>(), 7)
                        .unwrap();
                }
                let result = merged.evaluate(EmitTo::All).unwrap();
                let result = result.as_list::<i32>();
                for (g, want) in want.iter().enumerate() {
                    let got: Vec<Option<f64>> = result
                        .value(g)
                        .as_primitive::<Float64Type>()
                        .iter()
                        .collect();
                    assert_eq!(
                        &got,
                        want,
                        "group {g}, nulls {nulls}, filter {filtered}, {}",
                        input.data_type()
                    );
                }
            }
        }
    }
}
