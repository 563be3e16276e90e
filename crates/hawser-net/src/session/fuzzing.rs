//! Entry points for the fuzz targets in `fuzz/` into the session layer's crate-private
//! parsing: `hawser_proto::session::fuzzing`'s, re-exported. Built only with `--cfg fuzzing`
//! (as `cargo fuzz` builds); not an API.

pub use hawser_proto::session::fuzzing::parse_identity_payload;
