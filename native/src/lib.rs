//! strata-native: the Linux namespace executor (see issue "Native backend"). Nothing here
//! yet; the crate exists so the workspace has its final shape.
