//! Property tests of everything that decodes bytes from another process: arbitrary
//! input never panics and never allocates without bound, and what we encode decodes
//! back exactly.

use proptest::prelude::*;
use supervisor_worker::codec;
use supervisor_worker::packet::{check_header, HEADER_LEN, MAX_MESSAGE};
use supervisor_worker::protocol::{FromChild, Hello, TaskOutcome, ToChild, HELLO_LEN, SECRET_LEN};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode::<FromChild>(&bytes);
        let _ = codec::decode::<ToChild>(&bytes);
        let _ = codec::decode::<TaskOutcome>(&bytes);
        let _ = codec::decode::<Vec<String>>(&bytes);
        let _ = Hello::verify(&bytes, &[0u8; SECRET_LEN]);
    }

    #[test]
    fn a_hello_is_accepted_only_with_its_secret(secret in any::<[u8; SECRET_LEN]>(), other in any::<[u8; SECRET_LEN]>(), pid in any::<u32>()) {
        let hello = Hello { version: 1, build_id: 7, pid, secret };
        let bytes = hello.to_bytes();
        prop_assert_eq!(bytes.len(), HELLO_LEN);
        prop_assert_eq!(Hello::verify(&bytes, &secret), Ok(hello));
        if other != secret {
            prop_assert!(Hello::verify(&bytes, &other).is_err());
        }
    }

    #[test]
    fn outcomes_round_trip_exactly(value in proptest::collection::vec(any::<u8>(), 0..256), error in proptest::option::of(".{0,40}"), id in any::<u64>()) {
        let msg = FromChild::Done { id, outcome: TaskOutcome::Returned { value: value.clone(), error: error.clone() }, timing: Default::default() };
        let bytes = codec::encode(&msg).unwrap();
        match codec::decode::<FromChild>(&bytes).unwrap() {
            FromChild::Done { id: i, outcome: TaskOutcome::Returned { value: v, error: e }, .. } => {
                prop_assert_eq!(i, id);
                prop_assert_eq!(v, value);
                prop_assert_eq!(e, error);
            }
            other => prop_assert!(false, "{other:?}"),
        }
        // Any truncation is an error, never a panic.
        for cut in 0..bytes.len() {
            prop_assert!(codec::decode::<FromChild>(&bytes[..cut]).is_err());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The packet-header check passes exactly the headers that describe their packet and
    /// announce at most `MAX_MESSAGE` bytes (what ipc-channel then allocates), and never
    /// panics, whatever the bytes.
    #[test]
    fn packet_headers_pass_only_if_they_describe_a_bounded_message(
        len in 0usize..(1 << 18),
        announced in prop_oneof![Just(None), any::<usize>().prop_map(Some)],
        total in prop_oneof![0usize..(2 << 20), any::<usize>()],
        head_len in 0usize..(2 * HEADER_LEN),
    ) {
        let announced = announced.unwrap_or(len);
        let mut head = announced.to_ne_bytes().to_vec();
        head.extend_from_slice(&total.to_ne_bytes());
        // Mostly the whole header, sometimes only its start.
        let head = &head[..head_len.min(HEADER_LEN)];
        let ok = len >= HEADER_LEN
            && head.len() >= HEADER_LEN
            && announced == len
            && total <= MAX_MESSAGE
            && total >= len - HEADER_LEN;
        prop_assert_eq!(check_header(len, head).is_ok(), ok);
    }

    #[test]
    fn arbitrary_headers_never_panic_the_check(len in any::<usize>(), head in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = check_header(len, &head);
    }
}
