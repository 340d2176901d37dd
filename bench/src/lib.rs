//! mtnode benchmark support: nothing shared yet.
