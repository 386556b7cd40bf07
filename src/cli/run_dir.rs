//! The run folder of `lorabert train`: a new run refuses a folder that holds one, and a resumed
//! run names the flags it ignores (it continues with its saved configuration).

use std::path::Path;

use anyhow::{Result, bail};

use crate::train::TrainConfig;
use crate::train::resume::names as resume_names;

/// Arguments a resumed run still takes from the command line; every other one describes the
/// run, whose saved configuration `--resume` continues with.
const TAKEN_ON_RESUME: [&str; 9] = [
    "resume",
    "model",
    "data",
    "threads",
    "backend",
    "skip_memory_check",
    "exact_precision",
    "check_only",
    "given",
];

/// The note naming the run-describing flags in `given` (clap ids) that `--resume` ignores,
/// each with its saved value where the configuration has a field of that name (transformers'
/// `Trainer` warns alike when resumed with other arguments); `None` when there are none.
pub(super) fn ignored_on_resume(given: &[String], saved: &TrainConfig) -> Option<String> {
    let saved = serde_json::to_value(saved).unwrap_or_default();
    let adapter = match saved.get("adapter") {
        Some(a) if a.get("use_dora") == Some(&serde_json::Value::Bool(true)) => "dora",
        Some(a) if a.is_object() => "lora",
        _ => "none",
    };
    let value = |id: &str| {
        if id == "adapter" {
            return format!(" (saved: {adapter})");
        }
        let key = match id {
            "task" => saved.get("tasks"),
            "r" | "lora_alpha" | "lora_dropout" | "use_rslora" | "target_modules" => {
                saved.get("adapter").and_then(|a| a.get(id))
            }
            "max_train" => saved.get("max_train_examples"),
            "max_eval" => saved.get("max_eval_examples"),
            _ => saved.get(id),
        };
        key.map(|v| format!(" (saved: {v})")).unwrap_or_default()
    };
    let ignored: Vec<String> = given
        .iter()
        .filter(|id| !TAKEN_ON_RESUME.contains(&id.as_str()))
        .map(|id| format!("--{}{}", id.replace('_', "-"), value(id)))
        .collect();
    (!ignored.is_empty()).then(|| {
        format!(
            "note: --resume continues with the run's saved configuration; ignored: {}. Start a \
             new run (another --out, or --overwrite) to train with other options",
            ignored.join(", ")
        )
    })
}

/// Refuses to start a new run in `out` when it holds one: an interrupted run (its resume
/// checkpoint would be lost) or any run's `results.json` and `best/`.
pub(super) fn refuse_existing_run(out: &Path, resume_hint: &str) -> Result<()> {
    if out.join("resume").join(resume_names::STATE).is_file() {
        bail!(
            "{} holds an interrupted run: continue it with `{resume_hint}`, or pass --overwrite to start over (its resume checkpoint is then replaced)",
            out.display()
        );
    }
    if out.join("results.json").is_file() {
        bail!(
            "{} holds a run (results.json, best/): choose another --out, or pass --overwrite to replace it",
            out.display()
        );
    }
    Ok(())
}
