//! Strata's Dockerfile builder.

pub mod build;
pub mod dockerfile;
