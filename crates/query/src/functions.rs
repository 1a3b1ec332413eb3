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
//! A span's clock is its service's (as in `lighttrace trace` when the
//! resource names no host). Null span ids are skipped; a null parent makes a
//! root; a null end is taken as the start.

use std::mem::size_of;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Builder, ListArray, StringBuilder, StructArray};
use arrow::buffer::OffsetBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use lighttrace_analysis::{self as analysis, analyze};

/// The functions to register in a session.
pub fn aggregate_functions() -> Vec<AggregateUDF> {
    vec![AggregateUDF::from(CriticalPath::new())]
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

/// The `critical_path` aggregate (see the module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CriticalPath {
    signature: Signature,
}

impl CriticalPath {
    pub fn new() -> Self {
        CriticalPath {
            signature: Signature::any(ARGUMENTS.len(), Volatility::Immutable),
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

fn result_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(result_fields()),
        true,
    )))
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
        "critical_path"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_argument_types(arg_types)?;
        Ok(result_type())
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(CriticalPathAccumulator::default()))
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

#[derive(Debug, Default)]
struct CriticalPathAccumulator {
    spans: Vec<analysis::Span>,
    bytes: usize,
}

impl CriticalPathAccumulator {
    /// Appends the rows of `columns` (the seven arguments, any accepted type).
    fn append(&mut self, columns: &[ArrayRef]) -> Result<()> {
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
            let value = |array: &arrow::array::StringArray| {
                (!array.is_null(row)).then(|| array.value(row).to_owned())
            };
            let mut span = analysis::Span::new(
                span_ids.value(row),
                value(services).unwrap_or_default(),
                value(names).unwrap_or_default(),
                analysis::SpanKind::from_name(&value(kinds).unwrap_or_default()),
                start,
                end,
            );
            span.parent_span_id = value(parents).filter(|p| !p.is_empty());
            self.bytes += span_bytes(&span);
            self.spans.push(span);
        }
        Ok(())
    }
}

fn span_bytes(span: &analysis::Span) -> usize {
    size_of::<analysis::Span>()
        + span.span_id.capacity()
        + span.parent_span_id.as_ref().map_or(0, String::capacity)
        + span.name.capacity()
        + span.service_name.capacity() * 2
}

impl Accumulator for CriticalPathAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.append(values)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let analyzed = analyze(&self.spans);
        let mut span_ids = StringBuilder::new();
        let mut services = StringBuilder::new();
        let mut names = StringBuilder::new();
        let mut depths = Int64Builder::new();
        let mut self_times = Int64Builder::new();
        let mut critical = Int64Builder::new();
        let mut skews = Int64Builder::new();
        for &index in &analyzed.order {
            let (span, result) = (&self.spans[index], &analyzed.spans[index]);
            span_ids.append_value(&span.span_id);
            services.append_value(&span.service_name);
            names.append_value(&span.name);
            depths.append_value(result.depth as i64);
            self_times.append_value(result.self_time_ns);
            critical.append_value(result.critical_path_ns);
            skews.append_value(result.clock_skew_ns);
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
        let items = StructArray::try_new(result_fields(), columns, None)?;
        let DataType::List(item_field) = result_type() else {
            unreachable!("result_type is a list");
        };
        let list = ListArray::try_new(
            item_field,
            OffsetBuffer::from_lengths([items.len()]),
            Arc::new(items),
            None,
        )?;
        Ok(ScalarValue::List(Arc::new(list)))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.spans.capacity() * size_of::<analysis::Span>() + self.bytes
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut span_ids = StringBuilder::new();
        let mut parents = StringBuilder::new();
        let mut starts = Int64Builder::new();
        let mut ends = Int64Builder::new();
        let mut kinds = StringBuilder::new();
        let mut services = StringBuilder::new();
        let mut names = StringBuilder::new();
        for span in &self.spans {
            span_ids.append_value(&span.span_id);
            parents.append_option(span.parent_span_id.as_deref());
            starts.append_value(span.start_ns);
            ends.append_value(span.end_ns);
            kinds.append_value(kind_name(span.kind));
            services.append_value(&span.service_name);
            names.append_value(&span.name);
        }
        let arrays: [ArrayRef; 7] = [
            Arc::new(span_ids.finish()),
            Arc::new(parents.finish()),
            Arc::new(starts.finish()),
            Arc::new(ends.finish()),
            Arc::new(kinds.finish()),
            Arc::new(services.finish()),
            Arc::new(names.finish()),
        ];
        Ok(arrays
            .into_iter()
            .map(|values| {
                let field = Arc::new(Field::new("item", values.data_type().clone(), true));
                let list = ListArray::new(
                    field,
                    OffsetBuffer::from_lengths([values.len()]),
                    values,
                    None,
                );
                ScalarValue::List(Arc::new(list))
            })
            .collect())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        if states.len() != ARGUMENTS.len() {
            return exec_err!("critical_path: expected {} state columns", ARGUMENTS.len());
        }
        let lists: Vec<&ListArray> = states.iter().map(|s| s.as_list::<i32>()).collect();
        for row in 0..lists[0].len() {
            if lists[0].is_null(row) {
                continue;
            }
            let columns: Vec<ArrayRef> = lists.iter().map(|list| list.value(row)).collect();
            self.append(&columns)?;
        }
        Ok(())
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
