//! An epoch's batches: each task's examples in seeded batches (length-bucketed, or without a
//! text twice for kinds with in-batch negatives), all tasks' batches interleaved.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::config::TrainConfig;
use super::trainer::Trainer;
use crate::data::{make_batches, no_duplicate_batches};
use crate::tasks::{Prepared, TaskData};

impl Trainer {
    /// Number of optimiser steps one epoch over `train` takes with `cfg`'s batch size and
    /// gradient accumulation.
    pub fn optimizer_steps_per_epoch(train: &[TaskData], cfg: &TrainConfig) -> usize {
        Self::steps_per_epoch(train, cfg.batch_size)
            .div_ceil(cfg.controls.gradient_accumulation_steps.max(1))
    }

    /// Number of batches one epoch over `train` takes (optimiser steps without gradient
    /// accumulation).
    pub fn steps_per_epoch(train: &[TaskData], batch_size: usize) -> usize {
        train
            .iter()
            .map(|t| t.examples.len().div_ceil(batch_size.max(1)))
            .sum()
    }

    /// The batches of epoch `epoch` (0-based): each task's examples split into batches (length
    /// bucketed if configured; without a text twice in a batch for kinds with in-batch
    /// negatives, [`Kind::distinct_batches`]) with a seeded order, then all tasks' batches
    /// interleaved in a seeded random order. Returns `(index into train, example indices)`.
    pub fn plan_epoch(&self, train: &[TaskData], epoch: usize) -> Vec<(usize, Vec<usize>)> {
        let seed = self.epoch_seed(epoch);
        let mut plan = Vec::new();
        for (ti, td) in train.iter().enumerate() {
            for b in self.task_batches(td, seed ^ ti as u64).0 {
                plan.push((ti, b));
            }
        }
        plan.shuffle(&mut StdRng::seed_from_u64(seed));
        plan
    }

    /// Examples of `train` that [`plan_epoch`](Self::plan_epoch) leaves out of epoch `epoch`:
    /// with distinct batches, the examples whose texts clash with every batch until more
    /// batches than an epoch has would be needed (sentence-transformers' sampler would give a
    /// longer epoch; here the epoch keeps its number of steps).
    pub fn left_out(&self, train: &[TaskData], epoch: usize) -> usize {
        let seed = self.epoch_seed(epoch);
        train
            .iter()
            .enumerate()
            .map(|(ti, td)| self.task_batches(td, seed ^ ti as u64).1)
            .sum()
    }

    fn epoch_seed(&self, epoch: usize) -> u64 {
        self.cfg
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(epoch as u64)
    }

    /// One task's batches for an epoch and the examples left out of them.
    fn task_batches(&self, td: &TaskData, seed: u64) -> (Vec<Vec<usize>>, usize) {
        let n = td.examples.len();
        if td.kind.distinct_batches() {
            let texts: Vec<Vec<&[u32]>> = td.examples.iter().map(Prepared::texts).collect();
            let (mut batches, _) = no_duplicate_batches(&texts, self.cfg.batch_size, seed);
            let steps = n.div_ceil(self.cfg.batch_size.max(1));
            let left: usize = batches.iter().skip(steps).map(Vec::len).sum();
            batches.truncate(steps);
            return (batches, left);
        }
        let lengths = td.lengths();
        let lens = self.cfg.bucket_by_length.then_some(lengths.as_slice());
        (make_batches(n, self.cfg.batch_size, true, seed, lens), 0)
    }
}
