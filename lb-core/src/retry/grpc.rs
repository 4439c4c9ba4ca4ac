//! gRPC status codes as `retry.retry_on` names them: `grpc_` and the code's name in lower snake
//! case (`grpc_unavailable` for UNAVAILABLE, 14), as gRPC's own service config names them in
//! `retryableStatusCodes` (gRFC A6) and Envoy in `retry_on: unavailable, resource-exhausted`.
//!
//! OK (0) is no failure and has no name here.

/// Every gRPC status code but OK, by its `retry_on` name, in code order
/// (<https://grpc.github.io/grpc/core/md_doc_statuscodes.html>).
pub const GRPC_STATUS_NAMES: [(&str, u8); 16] = [
    ("grpc_cancelled", 1),
    ("grpc_unknown", 2),
    ("grpc_invalid_argument", 3),
    ("grpc_deadline_exceeded", 4),
    ("grpc_not_found", 5),
    ("grpc_already_exists", 6),
    ("grpc_permission_denied", 7),
    ("grpc_resource_exhausted", 8),
    ("grpc_failed_precondition", 9),
    ("grpc_aborted", 10),
    ("grpc_out_of_range", 11),
    ("grpc_unimplemented", 12),
    ("grpc_internal", 13),
    ("grpc_unavailable", 14),
    ("grpc_data_loss", 15),
    ("grpc_unauthenticated", 16),
];

/// The code `name` stands for (`grpc_unavailable` → 14).
pub fn grpc_status_code(name: &str) -> Option<u8> {
    (GRPC_STATUS_NAMES.iter())
        .find(|(known, _)| *known == name)
        .map(|(_, code)| *code)
}

/// The `retry_on` name of `code` (14 → `grpc_unavailable`); `None` for OK and unknown codes.
pub fn grpc_status_name(code: u8) -> Option<&'static str> {
    (GRPC_STATUS_NAMES.iter())
        .find(|(_, known)| *known == code)
        .map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for (index, (name, code)) in GRPC_STATUS_NAMES.iter().enumerate() {
            assert_eq!(usize::from(*code), index + 1, "{name}: in code order");
            assert_eq!(grpc_status_code(name), Some(*code));
            assert_eq!(grpc_status_name(*code), Some(*name));
        }
        assert_eq!(grpc_status_code("grpc_ok"), None);
        assert_eq!(grpc_status_code("unavailable"), None);
        assert_eq!(grpc_status_name(0), None);
        assert_eq!(grpc_status_name(17), None);
    }
}
