//! End-to-end suite (see ARCHITECTURE.md).
