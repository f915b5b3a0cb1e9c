//! Kata agent API.
