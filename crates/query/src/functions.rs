//! SQL functions LightTrace adds to DataFusion (registered in every session).
//!
//! # `critical_path(span_id, parent_span_id, start_time, end_time, kind, service_name, name)`
//!
//! An aggregate over one trace's spans (group by `trace_id`): runs the same
//! analysis as `lighttrace trace` (span tree, clock-skew adjustment, self time,
//! critical path; see `lighttrace-analysis`) and returns one struct per span:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `span_id`, `service_name`, `name` | Utf8 | as given |
//! | `depth` | Int64 | 0 for a root (or an orphan) |
//! | `self_time_ns` | Int64 | its interval minus the union of its children's |
//! | `critical_path_ns` | Int64 | the time it spends on the critical path |
//! | `clock_skew_ns` | Int64 | the shift the skew adjustment applied |
//!
//! Per trace, the `critical_path_ns` of its spans sum to the durations of its
//! roots. `unnest` turns the list into rows:
//!
//! ```sql
//! -- Which operations the slowest checkout traces spent their time in.
//! WITH traces AS (
//!   SELECT trace_id,
//!          critical_path(span_id, parent_span_id, start_time, end_time,
//!                        kind, service_name, name) AS spans
//!   FROM spans
//!   WHERE trace_id IN (SELECT trace_id FROM spans
//!                      WHERE parent_span_id IS NULL AND name = 'checkout'
//!                      ORDER BY duration_ns DESC LIMIT 100)
//!   GROUP BY trace_id
//! ), per_span AS (SELECT unnest(spans) AS s FROM traces)
//! SELECT s['service_name'] AS service, s['name'] AS operation,
//!        sum(s['critical_path_ns']) / 1e6 AS critical_ms
//! FROM per_span GROUP BY 1, 2 ORDER BY 3 DESC;
//! ```
//!
//! # `critical_path_by_operation(…the same arguments…)`
//!
//! The same analysis, summed per operation of the trace (the waterfall's
//! "where the time went"): one struct per (service, span name) with `service_name`,
//! `name`, `spans` (how many), `self_time_ns` and `critical_path_ns`, most
//! critical-path time first. The `bottlenecks` report uses it.
//!
//! ```sql
//! SELECT trace_id, unnest(critical_path_by_operation(span_id, parent_span_id, start_time,
//!                         end_time, kind, service_name, name)) AS op
//! FROM spans WHERE trace_id = '4bf92f3577b34da6a3ce929d0e0e4736' GROUP BY trace_id;
//! ```
//!
//! For both: a span's clock is its service's (as in `lighttrace trace` when the
//! resource names no host). Null span ids are skipped; a null parent makes a
//! root; a null end is taken as the start.

use std::mem::size_of;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Builder, ListArray, StringBuilder, StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use lighttrace_analysis::{self as analysis, analyze, time_by_operation};

/// The functions to register in a session.
pub fn aggregate_functions() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::from(CriticalPath::new()),
        AggregateUDF::from(CriticalPath::by_operation()),
        AggregateUDF::from(crate::quantiles::Quantiles::new()),
        AggregateUDF::from(crate::step_series::StepSeries::new()),
    ]
}

/// The argument columns of `critical_path`, in order.
const ARGUMENTS: [&str; 7] = [
    "span_id",
    "parent_span_id",
    "start_time",
    "end_time",
    "kind",
    "service_name",
    "name",
];

/// The `critical_path` and `critical_path_by_operation` aggregates (see the
/// module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CriticalPath {
    signature: Signature,
    by_operation: bool,
}

impl CriticalPath {
    /// `critical_path`: one struct per span.
    pub fn new() -> Self {
        CriticalPath {
            signature: Signature::any(ARGUMENTS.len(), Volatility::Immutable),
            by_operation: false,
        }
    }

    /// `critical_path_by_operation`: one struct per (service, span name).
    pub fn by_operation() -> Self {
        CriticalPath {
            by_operation: true,
            ..Self::new()
        }
    }
}

impl Default for CriticalPath {
    fn default() -> Self {
        Self::new()
    }
}

fn result_fields() -> Fields {
    Fields::from(vec![
        Field::new("span_id", DataType::Utf8, false),
        Field::new("service_name", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("depth", DataType::Int64, false),
        Field::new("self_time_ns", DataType::Int64, false),
        Field::new("critical_path_ns", DataType::Int64, false),
        Field::new("clock_skew_ns", DataType::Int64, false),
    ])
}

fn operation_fields() -> Fields {
    Fields::from(vec![
        Field::new("service_name", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("spans", DataType::Int64, false),
        Field::new("self_time_ns", DataType::Int64, false),
        Field::new("critical_path_ns", DataType::Int64, false),
    ])
}

fn result_type(by_operation: bool) -> DataType {
    let fields = if by_operation {
        operation_fields()
    } else {
        result_fields()
    };
    DataType::List(Arc::new(Field::new("item", DataType::Struct(fields), true)))
}

/// The types the arguments are read as (and the state is kept in).
fn argument_types() -> [DataType; 7] {
    [
        DataType::Utf8,
        DataType::Utf8,
        DataType::Int64,
        DataType::Int64,
        DataType::Utf8,
        DataType::Utf8,
        DataType::Utf8,
    ]
}

impl AggregateUDFImpl for CriticalPath {
    fn name(&self) -> &str {
        if self.by_operation {
            "critical_path_by_operation"
        } else {
            "critical_path"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_argument_types(arg_types)?;
        Ok(result_type(self.by_operation))
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(CriticalPathAccumulator::new(self.by_operation)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(CriticalPathGroups {
            collected: Collected::default(),
            by_operation: self.by_operation,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(ARGUMENTS
            .iter()
            .zip(argument_types())
            .map(|(name, data_type)| {
                Arc::new(Field::new(
                    format!("{}[{name}]", args.name),
                    DataType::List(Arc::new(Field::new("item", data_type, true))),
                    true,
                ))
            })
            .collect())
    }
}

fn check_argument_types(arg_types: &[DataType]) -> Result<()> {
    let text = |t: &DataType| {
        matches!(
            t,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
        )
    };
    let time = |t: &DataType| {
        matches!(
            t,
            DataType::Timestamp(_, _) | DataType::Int64 | DataType::Null
        )
    };
    for (index, (name, data_type)) in ARGUMENTS.iter().zip(arg_types).enumerate() {
        let ok = if index == 2 || index == 3 {
            time(data_type)
        } else {
            text(data_type)
        };
        if !ok {
            return datafusion::common::plan_err!(
                "critical_path: argument {} ({name}) must be {}, not {data_type}",
                index + 1,
                if index == 2 || index == 3 {
                    "a timestamp"
                } else {
                    "text"
                }
            );
        }
    }
    Ok(())
}

/// The spans collected for each group (trace), and their heap size.
#[derive(Debug, Default)]
struct Collected {
    groups: Vec<Vec<analysis::Span>>,
    bytes: usize,
}

impl Collected {
    /// Appends the rows of `columns` (the seven arguments, any accepted type)
    /// to the groups `group_of(row)` names; `None` skips the row.
    fn append(
        &mut self,
        columns: &[ArrayRef],
        mut group_of: impl FnMut(usize) -> Option<usize>,
    ) -> Result<()> {
        if columns.len() != ARGUMENTS.len() {
            return exec_err!(
                "critical_path takes {} arguments, got {}",
                ARGUMENTS.len(),
                columns.len()
            );
        }
        let converted = columns
            .iter()
            .zip(argument_types())
            .map(|(column, data_type)| {
                Ok(match (column.data_type(), &data_type) {
                    // Timestamps of any unit → nanoseconds.
                    (DataType::Timestamp(_, _), DataType::Int64) => {
                        let ns = cast(
                            column,
                            &DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None),
                        )?;
                        cast(&ns, &DataType::Int64)?
                    }
                    _ => cast(column, &data_type)?,
                })
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let text = |i: usize| converted[i].as_string::<i32>();
        let times = |i: usize| converted[i].as_primitive::<Int64Type>();
        let (span_ids, parents, kinds, services, names) =
            (text(0), text(1), text(4), text(5), text(6));
        let (starts, ends) = (times(2), times(3));
        for row in 0..span_ids.len() {
            if span_ids.is_null(row) {
                continue;
            }
            let Some(group) = group_of(row) else {
                continue;
            };
            let start = if starts.is_null(row) {
                0
            } else {
                starts.value(row)
            };
            let end = if ends.is_null(row) {
                start
            } else {
                ends.value(row)
            };
            let value = |array| text_at(array, row);
            let mut span = analysis::Span::new(
                span_ids.value(row),
                value(services).unwrap_or_default(),
                value(names).unwrap_or_default(),
                analysis::SpanKind::from_name(value(kinds).unwrap_or_default()),
                start,
                end,
            );
            span.parent_span_id = value(parents).filter(|p| !p.is_empty()).map(str::to_owned);
            self.bytes += span_bytes(&span);
            self.groups[group].push(span);
        }
        Ok(())
    }

    /// Takes the groups `emit_to` names, keeping the byte count roughly right.
    fn take(&mut self, emit_to: EmitTo) -> Vec<Vec<analysis::Span>> {
        let taken = emit_to.take_needed(&mut self.groups);
        let freed: usize = taken.iter().flatten().map(span_bytes).sum();
        self.bytes = self.bytes.saturating_sub(freed);
        taken
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.groups.capacity() * size_of::<Vec<analysis::Span>>() + self.bytes
    }
}

fn text_at(array: &arrow::array::StringArray, row: usize) -> Option<&str> {
    (!array.is_null(row)).then(|| array.value(row))
}

fn span_bytes(span: &analysis::Span) -> usize {
    size_of::<analysis::Span>()
        + span.span_id.capacity()
        + span.parent_span_id.as_ref().map_or(0, String::capacity)
        + span.name.capacity()
        + span.service_name.capacity() * 2
}

/// The result list of each group.
fn result_lists(groups: &[Vec<analysis::Span>], by_operation: bool) -> Result<ArrayRef> {
    if by_operation {
        operation_lists(groups)
    } else {
        analyzed_lists(groups)
    }
}

/// Per group, the critical-path and self time of each (service, span name).
fn operation_lists(groups: &[Vec<analysis::Span>]) -> Result<ArrayRef> {
    let mut services = StringBuilder::new();
    let mut names = StringBuilder::new();
    let mut counts = Int64Builder::new();
    let mut self_times = Int64Builder::new();
    let mut critical = Int64Builder::new();
    let mut lengths = Vec::with_capacity(groups.len());
    for spans in groups {
        let operations = time_by_operation(spans, &analyze(spans));
        for operation in &operations {
            services.append_value(&operation.service_name);
            names.append_value(&operation.name);
            counts.append_value(i64::try_from(operation.spans).unwrap_or(i64::MAX));
            self_times.append_value(operation.self_time_ns);
            critical.append_value(operation.critical_path_ns);
        }
        lengths.push(operations.len());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(services.finish()),
        Arc::new(names.finish()),
        Arc::new(counts.finish()),
        Arc::new(self_times.finish()),
        Arc::new(critical.finish()),
    ];
    list_of(operation_fields(), columns, lengths, true)
}

fn list_of(
    fields: Fields,
    columns: Vec<ArrayRef>,
    lengths: Vec<usize>,
    by_operation: bool,
) -> Result<ArrayRef> {
    let items = StructArray::try_new(fields, columns, None)?;
    let DataType::List(item_field) = result_type(by_operation) else {
        unreachable!("result_type is a list");
    };
    Ok(Arc::new(ListArray::try_new(
        item_field,
        OffsetBuffer::from_lengths(lengths),
        Arc::new(items),
        None,
    )?))
}

/// Per group, the analysis of its spans, in tree order.
fn analyzed_lists(groups: &[Vec<analysis::Span>]) -> Result<ArrayRef> {
    let mut span_ids = StringBuilder::new();
    let mut services = StringBuilder::new();
    let mut names = StringBuilder::new();
    let mut depths = Int64Builder::new();
    let mut self_times = Int64Builder::new();
    let mut critical = Int64Builder::new();
    let mut skews = Int64Builder::new();
    let mut lengths = Vec::with_capacity(groups.len());
    for spans in groups {
        let analyzed = analyze(spans);
        for &index in &analyzed.order {
            let (span, result) = (&spans[index], &analyzed.spans[index]);
            span_ids.append_value(&span.span_id);
            services.append_value(&span.service_name);
            names.append_value(&span.name);
            depths.append_value(i64::try_from(result.depth).unwrap_or(i64::MAX));
            self_times.append_value(result.self_time_ns);
            critical.append_value(result.critical_path_ns);
            skews.append_value(result.clock_skew_ns);
        }
        lengths.push(analyzed.order.len());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(span_ids.finish()),
        Arc::new(services.finish()),
        Arc::new(names.finish()),
        Arc::new(depths.finish()),
        Arc::new(self_times.finish()),
        Arc::new(critical.finish()),
        Arc::new(skews.finish()),
    ];
    list_of(result_fields(), columns, lengths, false)
}

/// The partial state of each group: one list per argument.
fn state_lists(groups: &[Vec<analysis::Span>]) -> Vec<ArrayRef> {
    let mut span_ids = StringBuilder::new();
    let mut parents = StringBuilder::new();
    let mut starts = Int64Builder::new();
    let mut ends = Int64Builder::new();
    let mut kinds = StringBuilder::new();
    let mut services = StringBuilder::new();
    let mut names = StringBuilder::new();
    for span in groups.iter().flatten() {
        span_ids.append_value(&span.span_id);
        parents.append_option(span.parent_span_id.as_deref());
        starts.append_value(span.start_ns);
        ends.append_value(span.end_ns);
        kinds.append_value(kind_name(span.kind));
        services.append_value(&span.service_name);
        names.append_value(&span.name);
    }
    let offsets = OffsetBuffer::from_lengths(groups.iter().map(Vec::len));
    let arrays: [ArrayRef; 7] = [
        Arc::new(span_ids.finish()),
        Arc::new(parents.finish()),
        Arc::new(starts.finish()),
        Arc::new(ends.finish()),
        Arc::new(kinds.finish()),
        Arc::new(services.finish()),
        Arc::new(names.finish()),
    ];
    arrays
        .into_iter()
        .map(|values| {
            let field = Arc::new(Field::new("item", values.data_type().clone(), true));
            Arc::new(ListArray::new(field, offsets.clone(), values, None)) as ArrayRef
        })
        .collect()
}

/// Appends partial states (lists, one row per group of another partition).
fn merge_states(
    collected: &mut Collected,
    states: &[ArrayRef],
    mut group_of: impl FnMut(usize) -> usize,
) -> Result<()> {
    if states.len() != ARGUMENTS.len() {
        return exec_err!("critical_path: expected {} state columns", ARGUMENTS.len());
    }
    let lists: Vec<&ListArray> = states.iter().map(|s| s.as_list::<i32>()).collect();
    // The rows' lists share one child array per column: append it once, each
    // element to the group of the row whose list holds it.
    let values: Vec<ArrayRef> = lists.iter().map(|list| Arc::clone(list.values())).collect();
    let offsets = lists[0].value_offsets();
    let mut owner = vec![None; values[0].len()];
    for row in 0..lists[0].len() {
        if lists[0].is_null(row) {
            continue;
        }
        let group = group_of(row);
        let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
        for slot in &mut owner[from..to] {
            *slot = Some(group);
        }
    }
    collected.append(&values, |element| owner[element])
}

/// `critical_path` per group, for DataFusion's hash aggregation.
#[derive(Debug)]
struct CriticalPathGroups {
    collected: Collected,
    by_operation: bool,
}

impl GroupsAccumulator for CriticalPathGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.collected
            .groups
            .resize_with(total_num_groups, Vec::new);
        self.collected.append(values, |row| {
            let keep = opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
            keep.then(|| group_indices[row])
        })
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        result_lists(&self.collected.take(emit_to), self.by_operation)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(state_lists(&self.collected.take(emit_to)))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.collected
            .groups
            .resize_with(total_num_groups, Vec::new);
        merge_states(&mut self.collected, values, |row| group_indices[row])
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // Each row its own group of one span (none where filtered out).
        let rows = values.first().map_or(0, |v| v.len());
        let mut single = Collected {
            groups: vec![Vec::new(); rows],
            bytes: 0,
        };
        single.append(values, |row| {
            opt_filter
                .is_none_or(|f| f.is_valid(row) && f.value(row))
                .then_some(row)
        })?;
        Ok(state_lists(&single.groups))
    }

    fn size(&self) -> usize {
        self.collected.size()
    }
}

/// `critical_path` of one group (without GROUP BY, or where DataFusion asks
/// for a plain accumulator).
#[derive(Debug)]
struct CriticalPathAccumulator {
    collected: Collected,
    by_operation: bool,
}

impl CriticalPathAccumulator {
    fn new(by_operation: bool) -> Self {
        CriticalPathAccumulator {
            collected: Collected {
                groups: vec![Vec::new()],
                bytes: 0,
            },
            by_operation,
        }
    }
}

impl Accumulator for CriticalPathAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.collected.append(values, |_| Some(0))
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let list = result_lists(&self.collected.groups, self.by_operation)?;
        ScalarValue::try_from_array(&list, 0)
    }

    fn size(&self) -> usize {
        self.collected.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        state_lists(&self.collected.groups)
            .iter()
            .map(|list| ScalarValue::try_from_array(list, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        merge_states(&mut self.collected, states, |_| 0)
    }
}

fn kind_name(kind: analysis::SpanKind) -> &'static str {
    match kind {
        analysis::SpanKind::Unspecified => "unspecified",
        analysis::SpanKind::Internal => "internal",
        analysis::SpanKind::Server => "server",
        analysis::SpanKind::Client => "client",
        analysis::SpanKind::Producer => "producer",
        analysis::SpanKind::Consumer => "consumer",
    }
}
