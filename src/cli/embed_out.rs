//! `lorabert embed`'s output file, written as the embeddings come (a chunk of sentences at a
//! time) so that memory stays flat on a large corpus: the file's size is known from the sentence
//! count before the first forward pass, so headers go first and each chunk's values go straight
//! to their place (safetensors: one region per tensor, reached by seeking).

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Result, bail};

use crate::model::Encoded;

/// What `--output` holds, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OutputFormat {
    /// safetensors: `sentence_embedding`, with `--hidden-states` also `last_hidden_state`,
    /// `attention_mask` and `input_ids`.
    Safetensors,
    /// A NumPy float32 array of the embeddings.
    Npy,
    /// A JSON object per sentence.
    Jsonl,
}

impl OutputFormat {
    /// The format of `path` by its extension.
    ///
    /// # Errors
    /// Another extension, naming the three.
    pub(super) fn of(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => Ok(OutputFormat::Safetensors),
            Some("npy") => Ok(OutputFormat::Npy),
            Some("jsonl") => Ok(OutputFormat::Jsonl),
            _ => bail!(
                "--output {}: name it .safetensors, .npy or .jsonl (the format follows the \
                 extension)",
                path.display()
            ),
        }
    }
}

/// The shapes of the output's tensors.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shapes {
    /// Sentences.
    pub n: usize,
    /// Hidden size (the width of `last_hidden_state`).
    pub hidden: usize,
    /// The width of `sentence_embedding`: the hidden size, or `--truncate-dim`.
    pub dim: usize,
    /// With `--hidden-states`: the longest sentence in tokens (the padded length of
    /// `last_hidden_state`, `attention_mask` and `input_ids`).
    pub longest: Option<usize>,
}

impl Shapes {
    /// The named tensors and their shapes, in file order (names sorted, as the safetensors
    /// crate writes same-dtype tensors).
    pub(super) fn tensors(&self) -> Vec<(&'static str, Vec<usize>)> {
        let (n, h) = (self.n, self.hidden);
        let mut t = Vec::new();
        if let Some(l) = self.longest {
            t.push(("attention_mask", vec![n, l]));
            t.push(("input_ids", vec![n, l]));
            t.push(("last_hidden_state", vec![n, l, h]));
        }
        t.push(("sentence_embedding", vec![n, self.dim]));
        t
    }
}

/// One chunk of consecutive sentences (input order) and their outputs.
pub(super) struct Chunk<'a> {
    /// Index of the chunk's first sentence in the input.
    pub start: usize,
    /// The chunk's sentences.
    pub sentences: &'a [String],
    /// Their token ids.
    pub encs: &'a [Encoded],
    /// `[sentences, dim]` pooled embeddings.
    pub pooled: &'a [f32],
    /// With `--hidden-states`: `[sentences, seq, hidden]` last hidden states, padded to the
    /// chunk's own longest sentence `seq`.
    pub states: Option<(&'a [f32], usize)>,
}

/// The safetensors header of `tensors` (f32, each `[shape]`, stored one after another in the
/// given order): the 8-byte little-endian header length, then the JSON header padded with
/// spaces to a multiple of 8 bytes, as the safetensors format specifies; and each tensor's byte
/// offset from the start of the data.
fn safetensors_header(tensors: &[(&str, Vec<usize>)]) -> Result<(Vec<u8>, Vec<u64>)> {
    // Keys sorted and fields in the safetensors crate's order, so the file is byte for byte
    // what `safetensors::serialize` writes for the same tensors.
    let mut entries = Vec::with_capacity(tensors.len());
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut begin = 0u64;
    for (name, shape) in tensors {
        let end = begin + 4 * shape.iter().product::<usize>() as u64;
        let entry = format!(
            "{}:{{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[{begin},{end}]}}",
            serde_json::to_string(name)?,
            serde_json::to_string(shape)?
        );
        entries.push((*name, entry));
        offsets.push(begin);
        begin = end;
    }
    entries.sort_by_key(|(name, _)| *name);
    let body: Vec<String> = entries.into_iter().map(|(_, e)| e).collect();
    let mut json = format!("{{{}}}", body.join(",")).into_bytes();
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    Ok((out, offsets))
}

/// The `.npy` (format version 1.0) header of a little-endian float32 array of `shape` in C
/// order, as `numpy.save` writes it: the magic string, the header dict padded with spaces to a
/// multiple of 64 bytes and ended by a newline.
pub(super) fn npy_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // magic (6) + version (2) + header length (2) + header + '\n', to a multiple of 64.
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// Little-endian bytes of `values`.
fn f32_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

/// Writes [`Chunk`]s to an open output file in `format`.
pub(super) struct Sink<W: Write + Seek> {
    out: W,
    format: OutputFormat,
    shapes: Shapes,
    /// safetensors: where the data starts, and each tensor's offset from there.
    data_start: u64,
    offsets: Vec<u64>,
}

impl<W: Write + Seek> Sink<W> {
    /// Writes the header of `format` for `shapes` to `out` (positioned at its start).
    ///
    /// # Errors
    /// Writing fails.
    pub(super) fn new(mut out: W, format: OutputFormat, shapes: Shapes) -> Result<Self> {
        let (mut data_start, mut offsets) = (0, Vec::new());
        match format {
            OutputFormat::Safetensors => {
                let (header, o) = safetensors_header(&shapes.tensors())?;
                out.write_all(&header)?;
                (data_start, offsets) = (header.len() as u64, o);
            }
            OutputFormat::Npy => out.write_all(&npy_header(&[shapes.n, shapes.dim]))?,
            OutputFormat::Jsonl => {}
        }
        Ok(Sink {
            out,
            format,
            shapes,
            data_start,
            offsets,
        })
    }

    /// Writes `c`'s outputs in their place (chunks come in input order).
    ///
    /// # Errors
    /// Writing fails.
    pub(super) fn write(&mut self, c: &Chunk) -> Result<()> {
        let h = self.shapes.dim;
        match self.format {
            OutputFormat::Npy => self.out.write_all(&f32_bytes(c.pooled.iter().copied()))?,
            OutputFormat::Jsonl => {
                for (s, e) in c.sentences.iter().zip(c.pooled.chunks(h)) {
                    let line = serde_json::json!({ "sentence": s, "embedding": e });
                    serde_json::to_writer(&mut self.out, &line)?;
                    self.out.write_all(b"\n")?;
                }
            }
            OutputFormat::Safetensors => self.write_tensors(c)?,
        }
        Ok(())
    }

    /// safetensors: the chunk's rows of each tensor, padded to the longest sentence.
    fn write_tensors(&mut self, c: &Chunk) -> Result<()> {
        let h = self.shapes.hidden;
        let names = self.shapes.tensors();
        for ((name, shape), offset) in names.iter().zip(self.offsets.clone()) {
            let row: usize = shape[1..].iter().product();
            let at = self.data_start + offset + 4 * (c.start * row) as u64;
            self.out.seek(SeekFrom::Start(at))?;
            let longest = shape[1];
            let bytes = match *name {
                "sentence_embedding" => f32_bytes(c.pooled.iter().copied()),
                "attention_mask" => f32_bytes(c.encs.iter().flat_map(|e| {
                    (0..longest).map(move |t| if t < e.ids.len() { 1.0 } else { 0.0 })
                })),
                "input_ids" => f32_bytes(c.encs.iter().flat_map(|e| {
                    (0..longest).map(move |t| e.ids.get(t).map_or(0.0, |&v| v as f32))
                })),
                _ => {
                    // A sentence at a time: no byte copy of the chunk's states.
                    let Some((states, seq)) = c.states else {
                        bail!("internal: hidden states missing from the chunk");
                    };
                    let padding = vec![0u8; 4 * longest * h];
                    for (k, e) in c.encs.iter().enumerate() {
                        let rows = e.ids.len();
                        let v = &states[k * seq * h..(k * seq + rows) * h];
                        self.out.write_all(&f32_bytes(v.iter().copied()))?;
                        self.out.write_all(&padding[..4 * (longest - rows) * h])?;
                    }
                    continue;
                }
            };
            self.out.write_all(&bytes)?;
        }
        Ok(())
    }

    /// Flushes the output and gives it back.
    ///
    /// # Errors
    /// Flushing fails.
    pub(super) fn finish(mut self) -> Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn enc(ids: &[u32]) -> Encoded {
        Encoded {
            ids: ids.to_vec(),
            type_ids: vec![0; ids.len()],
            truncated: false,
        }
    }

    #[test]
    fn npy_is_what_numpy_save_writes() {
        // tests/golden/embedding.npy: numpy.save of this array (tools/make_golden_npy.py).
        let want =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/embedding.npy"))
                .unwrap();
        let mut got = npy_header(&[2, 3]);
        got.extend(f32_bytes([0.5, -1.0, 2.0, 3.25, 0.0, -0.125]));
        assert_eq!(got, want);
    }

    /// Two chunks streamed into a safetensors file give what the safetensors crate reads back
    /// and what [`crate::model::weights::f32_safetensors`] writes for the whole outputs.
    #[test]
    fn chunks_stream_into_the_safetensors_of_the_whole() {
        let (h, encs) = (2, [enc(&[1, 7, 2]), enc(&[1, 2]), enc(&[1, 5, 6, 2])]);
        let sentences: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let pooled: Vec<f32> = (0..6).map(|v| v as f32 * 0.5).collect();
        let shapes = Shapes {
            n: 3,
            hidden: h,
            dim: h,
            longest: Some(4),
        };
        // Chunk 1: sentences 0 and 1 padded to 3 tokens; chunk 2: sentence 2, 4 tokens.
        let s1: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let s2: Vec<f32> = (100..108).map(|v| v as f32).collect();
        let mut sink = Sink::new(
            std::io::Cursor::new(Vec::new()),
            OutputFormat::Safetensors,
            shapes,
        )
        .unwrap();
        sink.write(&Chunk {
            start: 0,
            sentences: &sentences[..2],
            encs: &encs[..2],
            pooled: &pooled[..4],
            states: Some((&s1, 3)),
        })
        .unwrap();
        sink.write(&Chunk {
            start: 2,
            sentences: &sentences[2..],
            encs: &encs[2..],
            pooled: &pooled[4..],
            states: Some((&s2, 4)),
        })
        .unwrap();
        let got = sink.finish().unwrap().into_inner();
        let mut whole = BTreeMap::new();
        whole.insert("sentence_embedding".to_string(), (vec![3, h], pooled));
        let mut hidden = vec![0f32; 3 * 4 * h];
        hidden[..6].copy_from_slice(&s1[..6]); // sentence 0: its 3 tokens
        hidden[8..12].copy_from_slice(&s1[6..10]); // sentence 1: its 2 tokens
        hidden[16..].copy_from_slice(&s2);
        whole.insert("last_hidden_state".to_string(), (vec![3, 4, h], hidden));
        let mask = vec![1., 1., 1., 0., 1., 1., 0., 0., 1., 1., 1., 1.];
        whole.insert("attention_mask".to_string(), (vec![3, 4], mask));
        let ids = vec![1., 7., 2., 0., 1., 2., 0., 0., 1., 5., 6., 2.];
        whole.insert("input_ids".to_string(), (vec![3, 4], ids));
        for name in whole.keys() {
            let a = crate::model::weights::read_f32_tensor(&got, name).unwrap();
            assert_eq!(&a, &whole[name], "{name}");
        }
        assert_eq!(
            got,
            crate::model::weights::f32_safetensors(&whole).unwrap(),
            "byte for byte what the safetensors crate writes"
        );
    }
}
