//! Strata's Dockerfile builder.

pub mod engine;
pub mod dockerfile;
