//! Concord exchange simulator.
