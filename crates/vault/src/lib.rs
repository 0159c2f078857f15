//! Sealed storage for a secure module (work in progress).
