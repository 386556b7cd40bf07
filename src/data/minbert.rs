//! Readers for the minBERT multitask files (CS224N default final project): tab-separated, CSV
//! quoting, a header whose first column is an unnamed row index; columns are looked up by name
//! as the starter code's `csv.DictReader(f, delimiter='\t')` does.

use super::table::{Dialect, Table};
use crate::error::{Error, Result};

/// The minBERT files: tab-separated with CSV quoting (the starter code's
/// `csv.DictReader(f, delimiter='\t')`), a header, rows checked column by column.
fn read_table(bytes: &[u8], source: &str) -> Result<Table> {
    Table::read_delimited(
        bytes,
        source,
        Dialect {
            delimiter: b'\t',
            quoting: true,
            header: true,
            ragged: true,
        },
    )
}

/// One SST example.
#[derive(Debug, Clone, PartialEq)]
pub struct SstExample {
    /// The 25-hex-character id.
    pub id: String,
    /// The sentence, trimmed.
    pub sentence: String,
    /// Sentiment 0..=4, absent in the test file.
    pub label: Option<usize>,
}

/// One sentence-pair example (Quora or STS).
#[derive(Debug, Clone, PartialEq)]
pub struct PairExample {
    /// The id.
    pub id: String,
    /// First sentence, trimmed.
    pub sentence1: String,
    /// Second sentence, trimmed.
    pub sentence2: String,
    /// Quora: 0.0 / 1.0 (`is_duplicate`); STS: similarity 0.0..=5.0; absent in test files.
    pub label: Option<f32>,
}

/// Rows read from one file, with the rows skipped for a missing label (counted, not fatal).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset<T> {
    /// The usable rows.
    pub examples: Vec<T>,
    /// 1-based line numbers of rows skipped because their label was empty.
    pub skipped_lines: Vec<u64>,
}

/// Which label a pair file carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairLabel {
    /// Quora `is_duplicate`, 0 or 1.
    Paraphrase,
    /// STS `similarity`, 0..=5.
    Similarity,
    /// No label column (test files).
    None,
}

fn field<'r>(
    row: &'r [String],
    idx: usize,
    name: &str,
    source: &str,
    line: u64,
) -> Result<&'r str> {
    row.get(idx).map(|s| s.as_str()).ok_or_else(|| {
        Error::data(
            source,
            line,
            format!("row has {} fields, column `{name}` is missing", row.len()),
        )
    })
}

/// Reads an SST file (`ids-sst-{train,dev,test-student}.csv`) from its bytes.
/// `labeled` requires the `sentiment` column (0..=4).
///
/// # Errors
/// [`Error::Data`] naming `source` and the line: a missing column, a non-numeric or
/// out-of-range label, a field that is not UTF-8, a malformed row, or no rows.
pub fn read_sst(bytes: &[u8], source: &str, labeled: bool) -> Result<Dataset<SstExample>> {
    let t = read_table(bytes, source)?;
    let id_c = t.column("id")?;
    let s_c = t.column("sentence")?;
    let l_c = if labeled {
        Some(t.column("sentiment")?)
    } else {
        None
    };
    let mut examples = Vec::with_capacity(t.rows.len());
    let mut skipped_lines = Vec::new();
    for r in &t.rows {
        let (line, row) = (r.line, &r.fields);
        let id = field(row, id_c, "id", source, line)?.to_string();
        let sentence = field(row, s_c, "sentence", source, line)?
            .trim()
            .to_string();
        let label = match l_c {
            None => None,
            Some(c) => {
                let raw = field(row, c, "sentiment", source, line)?.trim();
                if raw.is_empty() {
                    skipped_lines.push(line);
                    continue;
                }
                let v: f64 = raw.parse().map_err(|_| {
                    Error::data(source, line, format!("sentiment `{raw}` is not a number"))
                })?;
                if v.fract() != 0.0 || !(0.0..=4.0).contains(&v) {
                    return Err(Error::data(
                        source,
                        line,
                        format!("sentiment `{raw}` is not an integer in 0..=4"),
                    ));
                }
                Some(v as usize)
            }
        };
        examples.push(SstExample {
            id,
            sentence,
            label,
        });
    }
    if examples.is_empty() {
        return Err(Error::data(source, 1, "no usable rows"));
    }
    Ok(Dataset {
        examples,
        skipped_lines,
    })
}

/// Reads a Quora or STS file from its bytes. Rows whose label is empty are skipped and their
/// lines recorded (two rows of `quora-dev.csv` are such).
///
/// # Errors
/// [`Error::Data`] naming `source` and the line: a missing column, a non-numeric or out-of-range
/// label (Quora: 0/1, STS: 0..=5), a field that is not UTF-8, a malformed row, or no rows.
pub fn read_pairs(bytes: &[u8], source: &str, label: PairLabel) -> Result<Dataset<PairExample>> {
    let t = read_table(bytes, source)?;
    let id_c = t.column("id")?;
    let a_c = t.column("sentence1")?;
    let b_c = t.column("sentence2")?;
    let (l_name, l_c) = match label {
        PairLabel::Paraphrase => ("is_duplicate", Some(t.column("is_duplicate")?)),
        PairLabel::Similarity => ("similarity", Some(t.column("similarity")?)),
        PairLabel::None => ("", None),
    };
    let mut examples = Vec::with_capacity(t.rows.len());
    let mut skipped_lines = Vec::new();
    for r in &t.rows {
        let (line, row) = (r.line, &r.fields);
        let id = field(row, id_c, "id", source, line)?.to_string();
        let sentence1 = field(row, a_c, "sentence1", source, line)?
            .trim()
            .to_string();
        let sentence2 = field(row, b_c, "sentence2", source, line)?
            .trim()
            .to_string();
        let value = match l_c {
            None => None,
            Some(c) => {
                let raw = row.get(c).map(|s| s.trim()).unwrap_or("");
                if raw.is_empty() {
                    skipped_lines.push(line);
                    continue;
                }
                let v: f32 = raw.parse().map_err(|_| {
                    Error::data(source, line, format!("{l_name} `{raw}` is not a number"))
                })?;
                let ok = match label {
                    PairLabel::Paraphrase => v == 0.0 || v == 1.0,
                    _ => (0.0..=5.0).contains(&v),
                };
                if !ok {
                    let want = if label == PairLabel::Paraphrase {
                        "0 or 1"
                    } else {
                        "in 0..=5"
                    };
                    return Err(Error::data(
                        source,
                        line,
                        format!("{l_name} `{raw}` is not {want}"),
                    ));
                }
                Some(v)
            }
        };
        examples.push(PairExample {
            id,
            sentence1,
            sentence2,
            label: value,
        });
    }
    if examples.is_empty() {
        return Err(Error::data(source, 1, "no usable rows"));
    }
    Ok(Dataset {
        examples,
        skipped_lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sst_reads_and_trims() {
        let d = read_sst(
            b"\tid\tsentence\tsentiment\n0\tabc\t good film\t3\n",
            "t.csv",
            true,
        )
        .unwrap();
        assert_eq!(d.examples[0].sentence, "good film");
        assert_eq!(d.examples[0].label, Some(3));
    }

    #[test]
    fn sst_test_has_two_index_columns() {
        let d = read_sst(b"0\t\tid\tsentence\n1\t0.0\tabc\t x\n", "t.csv", false).unwrap();
        assert_eq!(d.examples[0].id, "abc");
        assert_eq!(d.examples[0].sentence, "x");
    }

    #[test]
    fn non_numeric_label_names_line() {
        let e = read_sst(
            b"\tid\tsentence\tsentiment\n0\ta\tx\t1\n1\tb\ty\tgood\n",
            "s.csv",
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("s.csv line 3"), "{e}");
        assert!(e.contains("not a number"), "{e}");
    }

    #[test]
    fn missing_column() {
        let e = read_pairs(
            b"\tid\tsentence1\tis_duplicate\n0\ta\tx\t1\n",
            "q.csv",
            PairLabel::Paraphrase,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing column `sentence2`"), "{e}");
    }

    #[test]
    fn empty_label_skipped_and_counted() {
        let d = read_pairs(
            b"\tid\tsentence1\tsentence2\tis_duplicate\n0\ta\tx\ty\t1.0\n1\tb\tx\ty\t\n2\tc\tx\ty\t0.0\n",
            "q.csv",
            PairLabel::Paraphrase,
        )
        .unwrap();
        assert_eq!(d.examples.len(), 2);
        assert_eq!(d.skipped_lines, vec![3]);
    }

    #[test]
    fn non_utf8_names_line() {
        let e = read_sst(
            b"\tid\tsentence\tsentiment\n0\ta\t\xff\xfe\t1\n",
            "u.csv",
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("u.csv line 2"), "{e}");
        assert!(e.contains("UTF-8"), "{e}");
    }
}
