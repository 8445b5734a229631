//! Strata's Dockerfile builder.

pub mod build;
pub mod config_change;
pub mod dockerfile;
