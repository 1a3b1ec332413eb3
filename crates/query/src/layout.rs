//! Reading span files of every layout as the `spans` table.
//!
//! Files store ids as bytes and leave `end_time` out
//! ([`lighttrace_storage::layout`]). DataFusion's Parquet scan hands each file's
//! projection and predicate, written against the table schema, to a
//! [`PhysicalExprAdapter`]; [`SpansFileAdapterFactory`] rewrites them per file:
//!
//! - `trace_id = '4bf9…'` (also `<>`, `<`, `<=`, `>`, `>=`, `IN (…)`) with lowercase
//!   hex literals of the id's length becomes the same comparison of the binary
//!   column with the literal's bytes: lowercase hex sorts like the bytes, so the
//!   result is the same and row-group statistics, page indexes and bloom filters
//!   still prune;
//! - any other use of a binary id column reads it as lowercase hex ([`HexIdExpr`]);
//! - `end_time` becomes `start_time + duration_ns`.
//!
//! A file written in the older layout (hex text, `end_time` stored) has the table's
//! types, and DataFusion's default adapter handles it as before.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, InListExpr, Literal};
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapterFactory, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};
use lighttrace_model::columns;
use lighttrace_storage::layout::{binary_to_hex, decode_lower_hex};

/// Creates a [`SpansFileAdapter`] per file.
#[derive(Debug, Default)]
pub(crate) struct SpansFileAdapterFactory;

impl PhysicalExprAdapterFactory for SpansFileAdapterFactory {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> Result<Arc<dyn PhysicalExprAdapter>> {
        let default = DefaultPhysicalExprAdapterFactory.create(
            Arc::clone(&logical_file_schema),
            Arc::clone(&physical_file_schema),
        )?;
        Ok(Arc::new(SpansFileAdapter {
            physical: physical_file_schema,
            default,
        }))
    }
}

/// Rewrites expressions over the `spans` table into expressions over one file.
#[derive(Debug)]
struct SpansFileAdapter {
    physical: SchemaRef,
    default: Arc<dyn PhysicalExprAdapter>,
}

impl PhysicalExprAdapter for SpansFileAdapter {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
        expr.transform_down(|node| self.rewrite_node(node)).data()
    }
}

impl SpansFileAdapter {
    fn rewrite_node(
        &self,
        node: Arc<dyn PhysicalExpr>,
    ) -> Result<Transformed<Arc<dyn PhysicalExpr>>> {
        // The replacement is already over the file: its children must not be
        // rewritten again.
        let done =
            |expr: Arc<dyn PhysicalExpr>| Transformed::new(expr, true, TreeNodeRecursion::Jump);
        if let Some(binary) = node.downcast_ref::<BinaryExpr>()
            && let Some(rewritten) = self.binary_id_comparison(binary)
        {
            return Ok(done(rewritten));
        }
        if let Some(in_list) = node.downcast_ref::<InListExpr>()
            && let Some(rewritten) = self.binary_id_in_list(in_list)?
        {
            return Ok(done(rewritten));
        }
        if let Some(column) = node.downcast_ref::<Column>() {
            if let Some((file_column, _)) = self.binary_id_column(column.name()) {
                return Ok(done(Arc::new(HexIdExpr::new(file_column))));
            }
            if column.name() == columns::END_TIME
                && self.physical.index_of(columns::END_TIME).is_err()
                && let Some(end) = self.derived_end_time()
            {
                return Ok(done(end));
            }
            return Ok(done(self.default.rewrite(node)?));
        }
        Ok(Transformed::no(node))
    }

    /// The file's column `name` and its width, if it stores an id as bytes.
    fn binary_id_column(&self, name: &str) -> Option<(Arc<dyn PhysicalExpr>, i32)> {
        if !matches!(
            name,
            columns::TRACE_ID | columns::SPAN_ID | columns::PARENT_SPAN_ID
        ) {
            return None;
        }
        let index = self.physical.index_of(name).ok()?;
        match self.physical.field(index).data_type() {
            DataType::FixedSizeBinary(width) => Some((Arc::new(Column::new(name, index)), *width)),
            _ => None,
        }
    }

    /// `id <op> 'hex'` (either side) as a comparison of bytes.
    fn binary_id_comparison(&self, binary: &BinaryExpr) -> Option<Arc<dyn PhysicalExpr>> {
        if !matches!(
            binary.op(),
            Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
        ) {
            return None;
        }
        let (left, right) = (binary.left(), binary.right());
        if let Some(column) = left.downcast_ref::<Column>()
            && let Some((file_column, width)) = self.binary_id_column(column.name())
            && let Some(bytes) = hex_literal(right, width)
        {
            return Some(Arc::new(BinaryExpr::new(file_column, *binary.op(), bytes)));
        }
        if let Some(column) = right.downcast_ref::<Column>()
            && let Some((file_column, width)) = self.binary_id_column(column.name())
            && let Some(bytes) = hex_literal(left, width)
        {
            return Some(Arc::new(BinaryExpr::new(bytes, *binary.op(), file_column)));
        }
        None
    }

    /// `id [NOT] IN ('hex', …)` over bytes, when every item is a hex literal.
    fn binary_id_in_list(&self, in_list: &InListExpr) -> Result<Option<Arc<dyn PhysicalExpr>>> {
        let Some(column) = in_list.expr().downcast_ref::<Column>() else {
            return Ok(None);
        };
        let Some((file_column, width)) = self.binary_id_column(column.name()) else {
            return Ok(None);
        };
        let Some(items) = in_list
            .list()
            .iter()
            .map(|item| hex_literal(item, width))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        let list = InListExpr::try_new(file_column, items, in_list.negated(), &self.physical)?;
        Ok(Some(Arc::new(list)))
    }

    /// `start_time + duration_ns` over the file, if it has both.
    fn derived_end_time(&self) -> Option<Arc<dyn PhysicalExpr>> {
        let start = self.physical.index_of(columns::START_TIME).ok()?;
        let duration = self.physical.index_of(columns::DURATION_NS).ok()?;
        let start: Arc<dyn PhysicalExpr> = Arc::new(Column::new(columns::START_TIME, start));
        let duration: Arc<dyn PhysicalExpr> = Arc::new(CastExpr::new(
            Arc::new(Column::new(columns::DURATION_NS, duration)),
            DataType::Duration(TimeUnit::Nanosecond),
            None,
        ));
        Some(Arc::new(BinaryExpr::new(start, Operator::Plus, duration)))
    }
}

/// A text literal that spells `width` bytes in lowercase hex, as a binary literal.
fn hex_literal(expr: &Arc<dyn PhysicalExpr>, width: i32) -> Option<Arc<dyn PhysicalExpr>> {
    let literal = expr.downcast_ref::<Literal>()?;
    let text = match literal.value() {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => s,
        _ => return None,
    };
    let mut bytes = vec![0u8; usize::try_from(width).ok()?];
    decode_lower_hex(text.as_bytes(), &mut bytes)?;
    Some(Arc::new(Literal::new(ScalarValue::FixedSizeBinary(
        width,
        Some(bytes),
    ))))
}

/// A binary id column read as lowercase hex text.
#[derive(Debug, Eq)]
pub(crate) struct HexIdExpr {
    input: Arc<dyn PhysicalExpr>,
}

impl PartialEq for HexIdExpr {
    fn eq(&self, other: &Self) -> bool {
        self.input.eq(&other.input)
    }
}

impl Hash for HexIdExpr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.input.hash(state);
    }
}

impl HexIdExpr {
    fn new(input: Arc<dyn PhysicalExpr>) -> Self {
        HexIdExpr { input }
    }
}

impl fmt::Display for HexIdExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hex({})", self.input)
    }
}

impl PhysicalExpr for HexIdExpr {
    fn data_type(&self, _input_schema: &Schema) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.input.nullable(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        match self.input.evaluate(batch)? {
            ColumnarValue::Array(array) => match array.as_fixed_size_binary_opt() {
                Some(binary) => Ok(ColumnarValue::Array(Arc::new(binary_to_hex(binary)))),
                None => exec_err!("hex id of a {} column", array.data_type()),
            },
            ColumnarValue::Scalar(ScalarValue::FixedSizeBinary(_, value)) => Ok(
                ColumnarValue::Scalar(ScalarValue::Utf8(value.map(hex::encode))),
            ),
            ColumnarValue::Scalar(other) => exec_err!("hex id of {other:?}"),
        }
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(HexIdExpr::new(input))),
            _ => exec_err!("hex id takes one argument"),
        }
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hex(")?;
        self.input.fmt_sql(f)?;
        write!(f, ")")
    }
}
