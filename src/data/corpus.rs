//! A corpus of documents for retrieval: what `lorabert search --corpus` ranks and what
//! `lorabert train --corpus-file` adds to an embedding run's retrieval evaluation.

use super::table::{Format, Table};
use crate::error::{Error, Result};

/// The documents of the corpus file `name` (its `bytes`): the lines of a text file, or of a CSV,
/// TSV or JSON Lines file (known by its extension, read with a header row) the fields of
/// `column` (default `text`, else the first column). Texts are trimmed; empty ones are skipped.
///
/// # Errors
/// [`Error::Data`] naming the file and line: bytes that are not UTF-8, a table that does not
/// parse or lacks `column`, or no text at all; [`Error::Invalid`] for a `column` asked of a text
/// file.
pub fn corpus_texts(bytes: &[u8], name: &str, column: Option<&str>) -> Result<Vec<String>> {
    let texts: Vec<String> = match Format::from_file_name(name) {
        Some(format) => {
            let table = Table::read(bytes, name, format, true)?;
            let c = match column {
                Some(c) => table.column(c)?,
                None => table.column("text").unwrap_or(0),
            };
            table
                .rows
                .iter()
                .map(|r| r.fields.get(c).map_or("", |s| s.trim()).to_string())
                .filter(|t| !t.is_empty())
                .collect()
        }
        _ => {
            if column.is_some() {
                return Err(Error::Invalid(format!(
                    "a text column is for a CSV, TSV or JSON Lines corpus; {name} is read as lines"
                )));
            }
            let text = std::str::from_utf8(bytes)
                .map_err(|e| Error::data(name, line_of(bytes, e.valid_up_to()), "not UTF-8"))?;
            // A byte-order mark is not part of the first document.
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        }
    };
    if texts.is_empty() {
        return Err(Error::data(
            name,
            1,
            "the corpus has no text (no non-empty line or field)",
        ));
    }
    Ok(texts)
}

/// The 1-based line of byte `at`.
fn line_of(bytes: &[u8], at: usize) -> u64 {
    1 + bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_table_columns() {
        let lines = corpus_texts(b" a \n\nb\r\n", "c.txt", None).unwrap();
        assert_eq!(lines, ["a", "b"]);
        let csv = corpus_texts(b"id,text\n1,x\n2,\n3,y\n", "c.csv", None).unwrap();
        assert_eq!(csv, ["x", "y"]);
        let col = corpus_texts(b"id,doc\n1,x\n", "c.csv", Some("doc")).unwrap();
        assert_eq!(col, ["x"]);
        let e = corpus_texts(b"ok\n\xff\n", "c.txt", None).unwrap_err();
        assert!(
            e.to_string().contains("c.txt") && e.to_string().contains("line 2"),
            "{e}"
        );
        let e = corpus_texts(b"\n \n", "c.txt", None).unwrap_err();
        assert!(e.to_string().contains("no text"), "{e}");
        assert!(corpus_texts(b"x\n", "c.txt", Some("text")).is_err());
    }
}
