//! Strata's Dockerfile builder.

pub mod dockerfile;
pub mod engine;
