//! Strata's Dockerfile builder.

pub mod config_change;
pub mod dockerfile;
