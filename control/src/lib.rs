//! config, replay, lab.
