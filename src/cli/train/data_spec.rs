//! The data flags of `train`: own data (`--train-file` and its column, kind and embedding flags)
//! as a [`DataSpec`], the minBERT pair tasks as embeddings (`--task sts --loss cosent`), and the
//! own-data flags given without a file.

use std::path::Path;

use anyhow::{Result, bail};

use super::TrainArgs;
use crate::cli::args::TaskTypeArg;
use crate::cli::io;
use crate::data::table::Format;
use crate::tasks::minbert::{Split, embedding_preset};
use crate::tasks::own::{DataSpec, TaskType};

impl TrainArgs {
    /// The own-data specification of `--train-file f` and the data flags.
    pub(super) fn own_spec(&self, f: &Path, label_names: Option<Vec<String>>) -> DataSpec {
        DataSpec {
            train_file: f.display().to_string(),
            validation_file: self
                .validation_file
                .as_ref()
                .map(|v| v.display().to_string()),
            validation_split: self.validation_split.unwrap_or(0.1),
            format: self.format.map(Format::from),
            no_header: self.no_header,
            text_column: self.text_column.clone(),
            text_pair_column: self.text_pair_column.clone(),
            label_column: self.label_column.clone(),
            task_type: self.task_type.map(|t| match t {
                TaskTypeArg::Classification => TaskType::Classification,
                TaskTypeArg::Regression => TaskType::Regression,
                TaskTypeArg::MultiLabel => TaskType::MultiLabel,
                TaskTypeArg::Embedding => TaskType::Embedding,
                TaskTypeArg::TokenClassification => TaskType::TokenClassification,
            }),
            metric_for_best_model: self.metric_for_best_model.clone(),
            strict_quotes: self.strict_quotes,
            label_separator: self.label_separator.clone(),
            label_columns: self.label_columns.clone(),
            label_names,
            threshold: self.threshold,
            ..DataSpec::default()
        }
    }

    /// `--task sts` or `--task para` with embedding flags (`--loss`, ...) and no --train-file:
    /// the minBERT pair task trained as sentence embeddings ([`embedding_preset`]).
    pub(super) fn embedding_preset(&self) -> bool {
        self.train_file.is_none() && !self.embedding.given().is_empty()
    }

    /// The own-data specification of [`Self::embedding_preset`]: the minBERT folder's training
    /// and dev files of `--task`.
    ///
    /// # Errors
    /// `--task sst` or `multi`; no data folder or no file of the task in it.
    pub(super) fn preset_spec(&self) -> Result<DataSpec> {
        let task = match self.task.tasks().as_slice() {
            [t] => *t,
            _ => bail!(
                "--task multi: the embedding flags ({}) train one pair task as sentence \
                 embeddings: use --task sts or --task para",
                self.embedding.given().join(", ")
            ),
        };
        // SST and multi are refused before the files are looked for.
        let mut spec = embedding_preset(task)?;
        let dir = io::resolve_data(self.data.as_deref())?;
        let file = |split| crate::cli::load::require_data_file(&dir, task, split);
        spec.train_file = file(Split::Train)?.display().to_string();
        spec.validation_file = Some(file(Split::Dev)?.display().to_string());
        spec.metric_for_best_model = self.metric_for_best_model.clone();
        Ok(spec)
    }

    /// The own-data options given without --train-file (they would be ignored).
    pub(super) fn stray_own_data_options(&self) -> Vec<&'static str> {
        let given = [
            (self.validation_file.is_some(), "--validation-file"),
            (self.validation_split.is_some(), "--validation-split"),
            (self.text_column.is_some(), "--text-column"),
            (self.text_pair_column.is_some(), "--text-pair-column"),
            (self.label_column.is_some(), "--label-column"),
            (self.task_type.is_some(), "--task-type"),
            (self.label_separator.is_some(), "--label-separator"),
            (!self.label_columns.is_empty(), "--label-columns"),
            (self.label_names.is_some(), "--label-names"),
            (self.threshold.is_some(), "--threshold"),
            (self.format.is_some(), "--format"),
            (self.no_header, "--no-header"),
            (self.strict_quotes, "--strict-quotes"),
            (
                self.metric_for_best_model.is_some(),
                "--metric-for-best-model",
            ),
        ];
        // With embedding flags and no --train-file, --task sts/para is the data
        // ([`Self::embedding_preset`]): the best-model metric and the embedding flags apply.
        let preset = self.embedding_preset();
        given
            .into_iter()
            .filter(|(g, n)| *g && !(preset && *n == "--metric-for-best-model"))
            .map(|(_, n)| n)
            .chain(self.tokens.given())
            .collect()
    }
}
