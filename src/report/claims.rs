//! The claims a sweep answers (the seed paper's questions), each computed from the sweep's own
//! rows and naming the cells it quotes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sweep::SweepRow;

/// A statement computed from the sweep's own numbers, with the cells it quotes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// Which question: `rank-1`, `dora-vs-lora`, `f16-vs-f32`, `attention-vs-all-linear`.
    pub id: String,
    /// The statement.
    pub text: String,
    /// Names of the cells it is computed from.
    pub cells: Vec<String>,
}

type Key = (String, String, String, String, usize); // task, adapter, targets, precision, r
type Family = (String, String, String, String); // task, adapter, targets, precision

fn grouped(rows: &[SweepRow]) -> BTreeMap<Key, Vec<&SweepRow>> {
    let mut m: BTreeMap<Key, Vec<&SweepRow>> = BTreeMap::new();
    for r in rows {
        m.entry((
            r.task.clone(),
            r.adapter.clone(),
            r.targets.clone(),
            r.precision.clone(),
            r.r,
        ))
        .or_default()
        .push(r);
    }
    m
}

fn avg(rs: &[&SweepRow], f: impl Fn(&SweepRow) -> f64) -> f64 {
    rs.iter().map(|r| f(r)).sum::<f64>() / rs.len().max(1) as f64
}

fn names(rs: &[&SweepRow]) -> Vec<String> {
    rs.iter().map(|r| r.cell.clone()).collect()
}

/// The four claims of the seed paper, each computed from (seed-averaged) cells of the sweep:
/// (a) how much of the best rank's score rank 1 reaches; (b) DoRA versus LoRA at equal rank;
/// (c) f16 versus f32 peak memory and speed; (d) attention-only versus all-linear.
pub fn claims(rows: &[SweepRow]) -> Vec<Claim> {
    let g = grouped(rows);
    let mut out = rank_one(&g);
    out.extend(dora_vs_lora(&g));
    out.extend(f16_vs_f32(&g));
    out.extend(attention_vs_all_linear(&g));
    out
}

type Groups<'a> = BTreeMap<Key, Vec<&'a SweepRow>>;

/// (a) Rank 1 against the best rank, per (task, adapter, targets, precision).
fn rank_one(g: &Groups) -> Vec<Claim> {
    let mut out = Vec::new();
    let mut fams: BTreeMap<Family, Vec<(usize, &Vec<&SweepRow>)>> = BTreeMap::new();
    for (k, v) in g {
        if k.1 != "none" {
            fams.entry((k.0.clone(), k.1.clone(), k.2.clone(), k.3.clone()))
                .or_default()
                .push((k.4, v));
        }
    }
    for ((task, adapter, targets, prec), ranks) in &fams {
        let Some((_, r1)) = ranks.iter().find(|(r, _)| *r == 1) else {
            continue;
        };
        let Some((best_r, best)) = ranks
            .iter()
            .max_by(|a, b| avg(a.1, |r| r.score).total_cmp(&avg(b.1, |r| r.score)))
        else {
            continue;
        };
        if ranks.len() < 2 {
            continue;
        }
        let (s1, sb) = (avg(r1, |r| r.score), avg(best, |r| r.score));
        let mut cells = names(r1);
        cells.extend(names(best));
        cells.dedup();
        out.push(Claim {
            id: "rank-1".into(),
            text: format!(
                "{task} {adapter} {targets} {prec}: rank 1 scores {s1:.4}, {:.1} % of the best rank (r = {best_r}, {sb:.4}), with {:.1} % of its trainable parameters",
                100.0 * s1 / sb,
                100.0 * avg(r1, |r| r.trainable_params as f64) / avg(best, |r| r.trainable_params as f64)
            ),
            cells,
        });
    }
    out
}

/// (b) DoRA against LoRA at equal rank.
fn dora_vs_lora(g: &Groups) -> Vec<Claim> {
    let mut out = Vec::new();
    for (k, dora) in g.iter().filter(|(k, _)| k.1 == "dora") {
        let lk = (
            k.0.clone(),
            "lora".to_string(),
            k.2.clone(),
            k.3.clone(),
            k.4,
        );
        let Some(lora) = g.get(&lk) else { continue };
        let (sd, sl) = (avg(dora, |r| r.score), avg(lora, |r| r.score));
        let (td, tl) = (
            avg(dora, |r| r.seconds_per_epoch),
            avg(lora, |r| r.seconds_per_epoch),
        );
        let mut cells = names(lora);
        cells.extend(names(dora));
        out.push(Claim {
            id: "dora-vs-lora".into(),
            text: format!(
                "{} {} {} r = {}: DoRA {sd:.4} vs LoRA {sl:.4} ({:+.4}); DoRA takes {:.2}× LoRA's time per epoch",
                k.0, k.2, k.3, k.4, sd - sl, td / tl.max(1e-12)
            ),
            cells,
        });
    }
    out
}

/// (c) f16 against f32: memory, time, score.
fn f16_vs_f32(g: &Groups) -> Vec<Claim> {
    let mut out = Vec::new();
    let mut any_f16 = false;
    for (k, h) in g.iter().filter(|(k, _)| k.3 == "f16") {
        let fk = (
            k.0.clone(),
            k.1.clone(),
            k.2.clone(),
            "f32".to_string(),
            k.4,
        );
        let Some(f) = g.get(&fk) else { continue };
        any_f16 = true;
        let mem = |rs: &[&SweepRow]| avg(rs, |r| r.peak_memory_bytes.unwrap_or(0) as f64);
        let mut cells = names(f);
        cells.extend(names(h));
        out.push(Claim {
            id: "f16-vs-f32".into(),
            text: format!(
                "{} {} {} r = {}: f16 peak memory {:.2}× f32, time per epoch {:.2}× f32, score {:+.4}",
                k.0, k.1, k.2, k.4,
                mem(h) / mem(f).max(1.0),
                avg(h, |r| r.seconds_per_epoch) / avg(f, |r| r.seconds_per_epoch).max(1e-12),
                avg(h, |r| r.score) - avg(f, |r| r.score)
            ),
            cells,
        });
    }
    if !any_f16 {
        out.push(Claim {
            id: "f16-vs-f32".into(),
            text: "no f16/f32 cell pairs in this sweep (the CPU backend computes in f32 only; run the sweep with --precision f32,f16 on a GPU backend)".into(),
            cells: vec![],
        });
    }
    out
}

/// (d) Attention-only against all-linear targets.
fn attention_vs_all_linear(g: &Groups) -> Vec<Claim> {
    let mut out = Vec::new();
    for (k, att) in g.iter().filter(|(k, _)| k.2 == "attention") {
        let ak = (
            k.0.clone(),
            k.1.clone(),
            "all-linear".to_string(),
            k.3.clone(),
            k.4,
        );
        let Some(all) = g.get(&ak) else { continue };
        let mut cells = names(att);
        cells.extend(names(all));
        out.push(Claim {
            id: "attention-vs-all-linear".into(),
            text: format!(
                "{} {} {} r = {}: attention-only {:.4} vs all-linear {:.4} ({:+.4}) with {:.0} % of the trainable parameters",
                k.0, k.1, k.3, k.4,
                avg(att, |r| r.score),
                avg(all, |r| r.score),
                avg(att, |r| r.score) - avg(all, |r| r.score),
                100.0 * avg(att, |r| r.trainable_params as f64) / avg(all, |r| r.trainable_params as f64).max(1.0)
            ),
            cells,
        });
    }
    out
}
