//! The embedded backend (in progress).
