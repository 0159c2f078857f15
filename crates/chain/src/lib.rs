//! Concord's chain adapters. `anvil` makes the local chain available for tests and the devnet.

pub mod anvil;
