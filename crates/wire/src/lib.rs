//! Concord wire security (work in progress).
