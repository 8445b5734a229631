//! Strata's Dockerfile builder.

pub mod config_change;
