//! Per-file value sets of the span and resource attributes, kept in the catalog.
//!
//! A search such as `{ resource.service.name = "frontend" &&
//! span.http.response.status_code = 500 }` reads the `attributes` map of every
//! span of every file of the service to find, perhaps, nothing: DataFusion
//! cannot push a condition on a map entry into the Parquet reader, and the
//! map's column statistics mix every key's values. Most attributes that people
//! search by hold a handful of values per file (routes, methods, status codes,
//! regions, versions). The flush records, for each key of a file, whether
//! every span has it and, while there are at most [`MAX_VALUES`] of them, the
//! exact set of its values. The query side evaluates a condition on such keys
//! against those values and skips the file without opening it when no
//! combination can hold (`lighttrace_query::pruning`).
//!
//! Keys with more values (client addresses, statements, ids) are recorded
//! without values: only a condition that needs the key absent or present can
//! use them. A file with more than [`MAX_KEYS`] distinct keys in one map is
//! marked incomplete, and then a key it does not list tells nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use arrow::array::{Array, AsArray};
use serde::{Deserialize, Serialize};

/// Values kept per key; a key with more is recorded as [`KeyValues::values`] `None`.
pub const MAX_VALUES: usize = 32;
/// Longest value kept, in bytes; a longer one makes the key's set unknown.
pub const MAX_VALUE_LEN: usize = 128;
/// Keys kept per map and file; with more the map's index is incomplete.
pub const MAX_KEYS: usize = 128;

/// What a file's spans hold in their `attributes` and `resource_attributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeIndex {
    pub span: MapIndex,
    pub resource: MapIndex,
}

/// The keys of one map column across a file's rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapIndex {
    /// Every key that occurs in the file is listed (false after [`MAX_KEYS`]).
    pub complete: bool,
    pub keys: BTreeMap<String, KeyValues>,
}

/// One key of a map column across a file's rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValues {
    /// Every row has the key (no row reads as NULL for it).
    pub in_every_row: bool,
    /// The distinct non-null values, when known (at most [`MAX_VALUES`],
    /// none longer than [`MAX_VALUE_LEN`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<BTreeSet<String>>,
    /// Some row has the key with a NULL value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub null_value: bool,
}

impl MapIndex {
    /// What `map[key]` can read as in the file: `Some(values)` where `None`
    /// stands for NULL (the key absent, or a NULL value), or `None` when the
    /// file does not tell.
    pub fn possible_values(&self, key: &str) -> Option<Vec<Option<&str>>> {
        let Some(entry) = self.keys.get(key) else {
            // Absent from a complete index: every row reads NULL.
            return self.complete.then(|| vec![None]);
        };
        let values = entry.values.as_ref()?;
        let mut out: Vec<Option<&str>> = values.iter().map(|v| Some(v.as_str())).collect();
        if !entry.in_every_row || entry.null_value {
            out.push(None);
        }
        Some(out)
    }
}

/// Builds a [`MapIndex`] from the map arrays of one file, row by row.
///
/// The flush calls this for every span, so it avoids hashing: rows of one
/// service repeat the same keys in the same order, and a key's value is most
/// often the one it had last. Each entry is first compared with the key seen
/// at the same position of the previous row, and each value with the key's
/// previous value.
#[derive(Debug)]
pub struct MapIndexBuilder {
    keys: Vec<KeyState>,
    lookup: HashMap<Box<[u8]>, usize>,
    /// The key index at each entry position of the previous row.
    previous_row: Vec<usize>,
    rows: u64,
    complete: bool,
}

#[derive(Debug)]
struct KeyState {
    key: Box<[u8]>,
    /// Rows holding the key; `last_row` stops a repeated key counting twice.
    rows: u64,
    last_row: u64,
    /// `None` once there are too many or too long values.
    values: Option<Vec<Box<[u8]>>>,
    last_value: usize,
    null_value: bool,
}

impl Default for MapIndexBuilder {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            lookup: HashMap::new(),
            previous_row: Vec::new(),
            rows: 0,
            complete: true,
        }
    }
}

impl MapIndexBuilder {
    /// Adds every row of `map` (a `Map(Utf8, Utf8)` column; other types mark
    /// the index incomplete and unknown).
    pub fn add(&mut self, map: &dyn Array) {
        let Some(map) = map.as_map_opt() else {
            self.give_up();
            return;
        };
        let (Some(keys), Some(values)) = (
            map.keys().as_string_opt::<i32>(),
            map.values().as_string_opt::<i32>(),
        ) else {
            self.give_up();
            return;
        };
        let offsets = map.value_offsets();
        for row in 0..map.len() {
            self.rows += 1;
            let stamp = self.rows;
            if map.is_null(row) {
                continue;
            }
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            for (position, entry) in (start..end).enumerate() {
                let key = keys.value(entry).as_bytes();
                let Some(index) = self.key_index(position, key) else {
                    continue;
                };
                let state = &mut self.keys[index];
                if state.last_row != stamp {
                    state.last_row = stamp;
                    state.rows += 1;
                }
                if values.is_null(entry) {
                    state.null_value = true;
                } else {
                    state.add_value(values.value(entry).as_bytes());
                }
            }
        }
    }

    fn key_index(&mut self, position: usize, key: &[u8]) -> Option<usize> {
        if let Some(&guess) = self.previous_row.get(position)
            && *self.keys[guess].key == *key
        {
            return Some(guess);
        }
        let index = match self.lookup.get(key) {
            Some(&index) => index,
            None if self.keys.len() >= MAX_KEYS => {
                self.complete = false;
                return None;
            }
            None => {
                let index = self.keys.len();
                self.keys.push(KeyState {
                    key: key.into(),
                    rows: 0,
                    last_row: 0,
                    values: Some(Vec::new()),
                    last_value: 0,
                    null_value: false,
                });
                self.lookup.insert(key.into(), index);
                index
            }
        };
        if position < self.previous_row.len() {
            self.previous_row[position] = index;
        } else if position == self.previous_row.len() {
            self.previous_row.push(index);
        }
        Some(index)
    }

    /// A column of another type: nothing is known about it.
    fn give_up(&mut self) {
        self.complete = false;
        self.keys.clear();
        self.lookup.clear();
        self.previous_row.clear();
    }

    pub fn finish(self) -> MapIndex {
        let rows = self.rows;
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        MapIndex {
            complete: self.complete,
            keys: self
                .keys
                .into_iter()
                .map(|state| {
                    let values = state
                        .values
                        .map(|values| values.iter().map(|v| text(v)).collect());
                    let entry = KeyValues {
                        in_every_row: state.rows == rows,
                        values,
                        null_value: state.null_value,
                    };
                    (text(&state.key), entry)
                })
                .collect(),
        }
    }
}

impl KeyState {
    fn add_value(&mut self, value: &[u8]) {
        let Some(values) = &mut self.values else {
            return;
        };
        if values.get(self.last_value).is_some_and(|v| **v == *value) {
            return;
        }
        if let Some(i) = values.iter().position(|v| **v == *value) {
            self.last_value = i;
            return;
        }
        if values.len() >= MAX_VALUES || value.len() > MAX_VALUE_LEN {
            self.values = None;
            return;
        }
        self.last_value = values.len();
        values.push(value.into());
    }
}

/// Builds a file's [`AttributeIndex`] from its span batches' two map columns.
#[derive(Debug, Default)]
pub struct AttributeIndexBuilder {
    pub span: MapIndexBuilder,
    pub resource: MapIndexBuilder,
}

impl AttributeIndexBuilder {
    pub fn finish(self) -> AttributeIndex {
        AttributeIndex {
            span: self.span.finish(),
            resource: self.resource.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{MapArray, MapBuilder, StringBuilder};

    fn maps(rows: &[&[(&str, Option<&str>)]]) -> MapArray {
        let mut builder = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for row in rows {
            for (k, v) in *row {
                builder.keys().append_value(k);
                builder.values().append_option(*v);
            }
            builder.append(true).unwrap();
        }
        builder.finish()
    }

    #[test]
    fn records_values_presence_and_nulls() {
        let mut builder = MapIndexBuilder::default();
        builder.add(&maps(&[
            &[("route", Some("/a")), ("code", Some("200"))],
            &[("route", Some("/b")), ("code", Some("200"))],
            // Another order, a repeated key, a null value.
            &[
                ("code", Some("503")),
                ("route", Some("/a")),
                ("route", Some("/c")),
            ],
        ]));
        builder.add(&maps(&[&[("code", None)]]));
        let index = builder.finish();
        assert!(index.complete);
        let route = &index.keys["route"];
        assert!(!route.in_every_row, "the fourth row has no route");
        assert_eq!(
            route.values.as_ref().unwrap(),
            &BTreeSet::from(["/a".to_string(), "/b".into(), "/c".into()])
        );
        let code = &index.keys["code"];
        assert!(code.in_every_row);
        assert!(code.null_value);
        assert_eq!(
            index.possible_values("code").unwrap(),
            vec![Some("200"), Some("503"), None]
        );
        assert_eq!(
            index.possible_values("route").unwrap(),
            vec![Some("/a"), Some("/b"), Some("/c"), None]
        );
        // Absent from a complete index: NULL in every row.
        assert_eq!(index.possible_values("missing").unwrap(), vec![None]);
    }

    #[test]
    fn too_many_or_too_long_values_are_unknown() {
        let ids: Vec<String> = (0..=MAX_VALUES).map(|i| format!("id-{i}")).collect();
        let rows: Vec<Vec<(&str, Option<&str>)>> = ids
            .iter()
            .map(|id| vec![("id", Some(id.as_str())), ("kind", Some("x"))])
            .collect();
        let rows: Vec<&[(&str, Option<&str>)]> = rows.iter().map(Vec::as_slice).collect();
        let long = "x".repeat(MAX_VALUE_LEN + 1);
        let mut builder = MapIndexBuilder::default();
        builder.add(&maps(&rows));
        builder.add(&maps(&[&[
            ("id", Some("a")),
            ("kind", Some("x")),
            ("long", Some(&long)),
        ]]));
        let index = builder.finish();
        assert_eq!(index.keys["id"].values, None);
        assert!(index.keys["id"].in_every_row);
        assert_eq!(index.possible_values("id"), None);
        assert_eq!(index.possible_values("long"), None);
        assert_eq!(index.possible_values("kind").unwrap(), vec![Some("x")]);
    }

    #[test]
    fn too_many_keys_make_the_index_incomplete() {
        let keys: Vec<String> = (0..=MAX_KEYS).map(|i| format!("k{i}")).collect();
        let row: Vec<(&str, Option<&str>)> = keys.iter().map(|k| (k.as_str(), Some("v"))).collect();
        let mut builder = MapIndexBuilder::default();
        builder.add(&maps(&[&row]));
        let index = builder.finish();
        assert!(!index.complete);
        assert_eq!(index.keys.len(), MAX_KEYS);
        // An unlisted key of an incomplete index tells nothing.
        assert_eq!(index.possible_values(&format!("k{MAX_KEYS}")), None);
        assert_eq!(index.possible_values("k0").unwrap(), vec![Some("v")]);
    }

    #[test]
    fn a_column_of_another_type_tells_nothing() {
        let mut builder = MapIndexBuilder::default();
        builder.add(&maps(&[&[("a", Some("1"))]]));
        builder.add(&arrow::array::Int64Array::from(vec![1]));
        let index = builder.finish();
        assert!(!index.complete);
        assert!(index.keys.is_empty());
        assert_eq!(index.possible_values("a"), None);
    }
}
