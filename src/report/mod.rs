//! Reports over finished runs: sweep grids and tables ([`sweep`]), claims ([`claims`]), charts
//! and the HTML report ([`html`]), SVG plots
//! ([`plot`]) and share links ([`share`]). The record of one run, `results.json`, is
//! [`crate::train::RunResults`]: training produces it, this module reads it.

pub mod claims;
pub mod html;
pub mod plot;
pub mod share;
pub mod sweep;
