//! Tables of text from the files people have: CSV (RFC 4180 quoting, the `csv` crate), TSV as
//! GLUE writes it (tab-separated, quoting off: MRPC's sentences carry unbalanced `"`), and JSON
//! Lines (one object per line). A UTF-8 byte-order mark is skipped; a header row is required
//! unless the caller says there is none (columns are then named `0`, `1`, ...). Every error
//! names the file and line (and the column where one is at fault).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The largest data file read, in bytes (1 GiB): larger files are refused with this limit named,
/// before they are read.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// A data file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with RFC 4180 quoting.
    Csv,
    /// Tab-separated values with quoting off (GLUE's TSVs).
    Tsv,
    /// JSON Lines: one JSON object per line, columns are its keys.
    Jsonl,
    /// CoNLL-style tagged tokens (one per line, a blank line between sentences), read by
    /// [`crate::data::conll`] for token classification, not as a table.
    Conll,
}

impl Format {
    /// The format of a file name by its extension: `.csv`, `.tsv` (or `.tab`), `.jsonl` (or
    /// `.ndjson`, `.json`), `.conll` (or `.iob`, `.bio`); `None` for anything else.
    pub fn from_file_name(name: &str) -> Option<Format> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "tsv" | "tab" => Some(Format::Tsv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "conll" | "iob" | "bio" => Some(Format::Conll),
            _ => None,
        }
    }

    /// The format of data file `name` (or `explicit` when given): [`from_file_name`], and a
    /// `.txt` data file is CoNLL (CoNLL-2003's own files are `.txt`).
    ///
    /// # Errors
    /// [`Error::Config`] naming the file when its extension is none of the known ones.
    ///
    /// [`from_file_name`]: Format::from_file_name
    pub fn resolve(name: &str, explicit: Option<Format>) -> Result<Format> {
        let txt = name.to_ascii_lowercase().ends_with(".txt");
        explicit
            .or_else(|| Format::from_file_name(name))
            .or(txt.then_some(Format::Conll))
            .ok_or_else(|| {
                Error::config(
                    name,
                    "unknown file extension: use .csv, .tsv, .jsonl or .conll, or name the format (--format csv|tsv|jsonl|conll)",
                )
            })
    }

    /// `csv`, `tsv` or `jsonl`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Jsonl => "jsonl",
            Format::Conll => "conll",
        }
    }
}

/// One data row: its 1-based line in the file and its fields in header order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based line number (the header is line 1 where there is one).
    pub line: u64,
    /// The fields, one per column of the header.
    pub fields: Vec<String>,
    /// JSON Lines: the fields that hold no text, by column index, with what they hold instead
    /// (`missing`, `null`, `an object`, `an array`); their `fields` entry is empty or the JSON.
    pub not_text: Vec<(usize, &'static str)>,
}

impl Row {
    /// What field `column` holds when it is not text (JSON Lines), else `None`.
    pub fn not_text(&self, column: usize) -> Option<&'static str> {
        self.not_text
            .iter()
            .find(|(c, _)| *c == column)
            .map(|(_, k)| *k)
    }
}

/// A table read from a file: the header (column names) and the data rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The file (quoted in errors).
    pub source: String,
    /// Column names (`0`, `1`, ... for a file without a header).
    pub header: Vec<String>,
    /// Data rows; blank lines are left out.
    pub rows: Vec<Row>,
}

impl Table {
    /// Rows whose fields hold line breaks, as a quoted CSV field may (RFC 4180): `(first line,
    /// last line)` of each, in file order. In a file of one-line texts such a row is almost
    /// always a stray `"` that merged the lines up to the next quote into one field.
    pub fn rows_spanning_lines(&self) -> Vec<(u64, u64)> {
        self.rows
            .iter()
            .filter_map(|r| {
                let breaks: u64 = r
                    .fields
                    .iter()
                    .map(|f| f.matches('\n').count() as u64)
                    .sum();
                (breaks > 0).then_some((r.line, r.line + breaks))
            })
            .collect()
    }

    /// The check on quotes of a CSV file read from `bytes`: `None` when no row spans lines;
    /// else a warning naming the first such row's lines, how many rows do, and the file's line
    /// count against its rows; with `strict` an error naming the line where the first such
    /// quote opened.
    ///
    /// # Errors
    /// [`Error::Data`] (with `strict`) naming the file and the line the quote opened on.
    pub fn check_quotes(&self, bytes: &[u8], strict: bool) -> Result<Option<String>> {
        let spans = self.rows_spanning_lines();
        let Some(&(first, last)) = spans.first() else {
            return Ok(None);
        };
        if strict {
            return Err(Error::data(
                &self.source,
                first,
                format!(
                    "a quoted field opens on this line and closes on line {last}, merging lines \
                     {first}-{last} into one field (a stray `\"`?); fix the quote, or leave out \
                     --strict-quotes if the field really spans lines"
                ),
            ));
        }
        let lines = bytes.iter().filter(|&&b| b == b'\n').count()
            + usize::from(bytes.last().is_some_and(|&b| b != b'\n'));
        let n = spans.len();
        Ok(Some(format!(
            "{}: {n} row{} of {} {} a quoted field spanning lines (the first: lines {first}-{last}); \
             the file has {lines} lines for {} rows and a header. In a file of one-line texts that \
             is a stray `\"` merging lines into one field: check line {first}, or pass \
             --strict-quotes to make it an error",
            self.source,
            if n == 1 { "" } else { "s" },
            self.rows.len(),
            if n == 1 { "holds" } else { "hold" },
            self.rows.len(),
        )))
    }
}

/// How a delimited file is split.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// Field separator.
    pub delimiter: u8,
    /// Whether `"` quotes fields (RFC 4180); off for GLUE's TSVs.
    pub quoting: bool,
    /// Whether the first row names the columns.
    pub header: bool,
    /// Whether rows may have fewer or more fields than the header (the minBERT readers check
    /// the columns they read themselves); otherwise such a row is an error.
    pub ragged: bool,
}

impl Table {
    /// Reads `bytes` of `format`; `header` says whether the first row (or, for JSON Lines, the
    /// objects' keys) names the columns.
    ///
    /// # Errors
    /// [`Error::Data`] naming `source` and the line: a field or line that is not UTF-8, a row
    /// whose field count differs from the header's, a line that is not a JSON object, a
    /// malformed row; a file with no header (or no JSON object).
    pub fn read(bytes: &[u8], source: &str, format: Format, header: bool) -> Result<Table> {
        let dialect = |delimiter, quoting| Dialect {
            delimiter,
            quoting,
            header,
            ragged: false,
        };
        match format {
            Format::Csv => Table::read_delimited(bytes, source, dialect(b',', true)),
            Format::Tsv => Table::read_delimited(bytes, source, dialect(b'\t', false)),
            Format::Jsonl => Table::read_jsonl(bytes, source),
            Format::Conll => Err(Error::data(
                source,
                1,
                "a CoNLL file (one token per line) holds tagged words, not a table: it is for \
                 token classification (--task-type token-classification)",
            )),
        }
    }

    /// Reads a delimited file (CSV, TSV) of `dialect`.
    ///
    /// # Errors
    /// As [`Table::read`].
    pub fn read_delimited(bytes: &[u8], source: &str, dialect: Dialect) -> Result<Table> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(dialect.delimiter)
            .quoting(dialect.quoting)
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes);
        let mut header: Option<Vec<String>> = None;
        let mut rows = Vec::new();
        let mut record = csv::ByteRecord::new();
        let mut lines = LineCounter::new(bytes);
        loop {
            let more = rdr.read_byte_record(&mut record).map_err(|e| {
                let line = e.position().map_or(0, |p| lines.line_at(p.byte()));
                Error::data(source, line, format!("malformed row: {e}"))
            })?;
            if !more {
                break;
            }
            let line = record.position().map_or(0, |p| lines.line_at(p.byte()));
            let fields = utf8_fields(&record, source, line)?;
            if fields.len() == 1 && fields[0].trim().is_empty() {
                continue; // a blank line
            }
            match &header {
                None if dialect.header => {
                    header = Some(fields);
                    continue;
                }
                None => header = Some((0..fields.len()).map(|i| i.to_string()).collect()),
                Some(_) => {}
            }
            let width = header.as_ref().map_or(0, Vec::len);
            if !dialect.ragged && fields.len() != width {
                return Err(Error::data(
                    source,
                    line,
                    format!(
                        "the row has {} field{}, the header {width}{}",
                        fields.len(),
                        if fields.len() == 1 { "" } else { "s" },
                        if dialect.delimiter == b',' {
                            " (a field with an unquoted comma, or a stray quote?)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            rows.push(Row {
                line,
                fields,
                not_text: Vec::new(),
            });
        }
        let header = header.ok_or_else(|| Error::data(source, 1, "empty file (no header)"))?;
        Ok(Table {
            source: source.to_string(),
            header,
            rows,
        })
    }

    /// Reads JSON Lines: each non-blank line one JSON object; the columns are the keys (each
    /// object's in alphabetical order, new ones appended as they appear); strings are taken as they are, numbers and booleans as written,
    /// `null` and absent keys as empty fields.
    fn read_jsonl(bytes: &[u8], source: &str) -> Result<Table> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut header: Vec<String> = Vec::new();
        let mut objects = Vec::new();
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = i as u64 + 1;
            let text = std::str::from_utf8(raw)
                .map_err(|e| Error::data(source, line, format!("not valid UTF-8: {e}")))?;
            if text.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(text)
                .map_err(|e| Error::data(source, line, format!("not JSON: {e}")))?;
            let Value::Object(o) = v else {
                return Err(Error::data(source, line, "not a JSON object"));
            };
            for k in o.keys() {
                if !header.contains(k) {
                    header.push(k.clone());
                }
            }
            objects.push((line, o));
        }
        if objects.is_empty() {
            return Err(Error::data(source, 1, "empty file (no JSON object)"));
        }
        let rows = objects
            .into_iter()
            .map(|(line, o)| {
                let mut not_text = Vec::new();
                let fields = header
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        let kind = match o.get(k) {
                            None => Some("missing"),
                            Some(Value::Null) => Some("null"),
                            Some(Value::Object(_)) => Some("an object"),
                            Some(Value::Array(_)) => Some("an array"),
                            Some(_) => None,
                        };
                        if let Some(kind) = kind {
                            not_text.push((i, kind));
                        }
                        match o.get(k) {
                            None | Some(Value::Null) => String::new(),
                            Some(Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                        }
                    })
                    .collect();
                Row {
                    line,
                    fields,
                    not_text,
                }
            })
            .collect();
        Ok(Table {
            source: source.to_string(),
            header,
            rows,
        })
    }

    /// The index of column `name`.
    ///
    /// # Errors
    /// [`Error::Data`] at line 1 naming the column and listing the header's columns; or naming
    /// it when the header has it more than once.
    pub fn column(&self, name: &str) -> Result<usize> {
        let count = self.header.iter().filter(|h| *h == name).count();
        if count > 1 {
            return Err(Error::data(
                &self.source,
                1,
                format!("column `{name}` appears {count} times in the header: rename one"),
            ));
        }
        self.header.iter().position(|h| h == name).ok_or_else(|| {
            Error::data(
                &self.source,
                1,
                format!(
                    "missing column `{name}`; the columns are {}",
                    self.header
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }
}

/// 1-based line numbers of byte offsets, counted forward as the reader advances. (The `csv`
/// crate's own line numbers lag by one in files with CRLF line ends, as Python's `csv` module
/// writes them: a record's position is taken before the `\n` of the previous line end.)
struct LineCounter<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            pos: 0,
            line: 1,
        }
    }

    /// The line of the record starting at byte `offset` (past any line-end bytes there).
    fn line_at(&mut self, offset: u64) -> u64 {
        let mut end = (offset as usize).min(self.bytes.len());
        while end < self.bytes.len() && matches!(self.bytes[end], b'\r' | b'\n') {
            end += 1;
        }
        if end < self.pos {
            // Not forward (an error position): count from the start.
            (self.pos, self.line) = (0, 1);
        }
        self.line += self.bytes[self.pos..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        self.pos = end;
        self.line
    }
}

fn utf8_fields(record: &csv::ByteRecord, source: &str, line: u64) -> Result<Vec<String>> {
    record
        .iter()
        .enumerate()
        .map(|(i, f)| {
            std::str::from_utf8(f).map(str::to_string).map_err(|e| {
                Error::data(
                    source,
                    line,
                    format!("field {} is not valid UTF-8: {e}", i + 1),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_tsv_does_not() {
        let t = Table::read(b"text,label\n\"a, b\",1\n", "a.csv", Format::Csv, true).unwrap();
        assert_eq!(t.rows[0].fields, vec!["a, b", "1"]);
        let t = Table::read(
            b"\xEF\xBB\xBFs1\ts2\n\" the witness \"\tx\n",
            "m.tsv",
            Format::Tsv,
            true,
        )
        .unwrap();
        assert_eq!(t.header, vec!["s1", "s2"]);
        assert_eq!(t.rows[0].fields, vec!["\" the witness \"", "x"]);
        assert_eq!(t.rows[0].line, 2);
    }

    #[test]
    fn jsonl_columns_are_keys() {
        let t = Table::read(
            b"{\"text\": \"a\", \"label\": 1}\n\n{\"label\": \"x\", \"text\": \"b\", \"id\": null}\n",
            "d.jsonl",
            Format::Jsonl,
            true,
        )
        .unwrap();
        assert_eq!(t.header, vec!["label", "text", "id"]);
        assert_eq!(t.rows[1].fields, vec!["x", "b", ""]);
        assert_eq!(t.rows[1].line, 3);
    }

    #[test]
    fn line_numbers_with_crlf_line_ends() {
        let t = Table::read(b"a,b\r\n1,2\r\n\r\n3,4\r\n", "w.csv", Format::Csv, true).unwrap();
        let lines: Vec<u64> = t.rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 4]);
        let e = Table::read(b"a,b\r\n1,2\r\n3\r\n", "w.csv", Format::Csv, true).unwrap_err();
        assert!(e.to_string().starts_with("w.csv line 3:"), "{e}");
    }

    #[test]
    fn ragged_rows_and_headerless_files() {
        let e = Table::read(b"a,b\n1,2\n3\n", "r.csv", Format::Csv, true).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("r.csv line 3: the row has 1 field, the header 2"),
            "{e}"
        );
        let t = Table::read(b"x\t1\ny\t0\n", "c.tsv", Format::Tsv, false).unwrap();
        assert_eq!(t.header, vec!["0", "1"]);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(Format::from_file_name("A.JSONL"), Some(Format::Jsonl));
        assert!(Format::resolve("data.xlsx", None).is_err());
    }
}
