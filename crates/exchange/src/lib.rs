//! Concord exchange connectors.
