//! IOAM.
