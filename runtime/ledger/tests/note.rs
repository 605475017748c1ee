//! C2SP signed-note and tlog-checkpoint: the specification's example, the Go
//! `sumdb/note` test vectors, and our own keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use femtoclaw_ledger::{Checkpoint, KeyError, NoteError, SigningKey, VerifierKey};

// From the C2SP signed-note specification, "Verifier keys / Example".
const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

// From golang.org/x/mod/sumdb/note note_test.go.
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

// Verifies: FC-CRYPTO-3607, FC-CRYPTO-3609, FC-CRYPTO-3628
#[test]
fn c2sp_spec_example_key_verifies_its_example_note() {
    let k = VerifierKey::parse(SPEC_VKEY).unwrap();
    assert_eq!(k.name(), "example.com/foo");
    assert_eq!(hex::encode(k.key_id()), "530d903a");
    assert_eq!(k.to_string(), SPEC_VKEY);
    assert_eq!(k.open(SPEC_NOTE).unwrap(), "This is an example message.\n");
    // One changed character of the text breaks it.
    let bad = SPEC_NOTE.replace("example message", "example massage");
    assert!(matches!(k.open(&bad), Err(NoteError::BadSignature(_))));
}

// Verifies: FC-CRYPTO-3606, FC-CRYPTO-3609, FC-CRYPTO-3628, FC-CRYPTO-4501
#[test]
fn go_sumdb_note_vectors_sign_and_verify() {
    let signer = SigningKey::parse(PETER_SKEY).unwrap();
    assert_eq!(signer.to_private_string(), PETER_SKEY);
    assert_eq!(signer.verifier().to_string(), PETER_VKEY);
    // Ed25519 is deterministic: our signature is byte-identical to Go's.
    let note = signer.sign_note(GO_TEXT).unwrap();
    assert_eq!(note, format!("{GO_TEXT}\n{PETER_SIG}"));

    let peter = VerifierKey::parse(PETER_VKEY).unwrap();
    let enoch = VerifierKey::parse(ENOCH_VKEY).unwrap();
    let both = format!("{GO_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    assert_eq!(peter.open(&both).unwrap(), GO_TEXT);
    assert_eq!(enoch.open(&both).unwrap(), GO_TEXT);
    // A note signed only by Enoch is refused by a verifier pinned to Peter.
    let only_enoch = format!("{GO_TEXT}\n{ENOCH_SIG}");
    assert!(matches!(
        peter.open(&only_enoch),
        Err(NoteError::UnknownKey(_))
    ));
    // Invalid signature (Go's own corruption).
    let corrupt = format!("{GO_TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert!(peter.open(&corrupt).is_err());
}

// Verifies: FC-CRYPTO-3610, FC-CRYPTO-4502
#[test]
fn go_sumdb_malformed_notes_are_refused() {
    let peter = VerifierKey::parse(PETER_VKEY).unwrap();
    let bad = [
        GO_TEXT.to_owned(),
        format!("{GO_TEXT}\n"),
        format!("{GO_TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\x01{GO_TEXT}\n{PETER_SIG}"),
        format!(
            "{GO_TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
        ),
        format!("{GO_TEXT}\n{PETER_SIG}Unexpected line.\n"),
        format!("{GO_TEXT}\n{}", PETER_SIG.repeat(101)),
    ];
    for note in bad {
        assert!(peter.open(&note).is_err(), "accepted {note:?}");
    }
}

// Verifies: FC-CRYPTO-3611, FC-CRYPTO-3709
#[test]
fn mangled_verifier_and_signer_keys_are_refused() {
    assert!(VerifierKey::parse(PETER_VKEY).is_ok());
    let b = PETER_VKEY.as_bytes();
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] = m[i].wrapping_add(1);
        if let Ok(s) = String::from_utf8(m) {
            assert!(VerifierKey::parse(&s).is_err(), "accepted {s}");
        }
        assert!(VerifierKey::parse(&PETER_VKEY[..i]).is_err());
    }
    // Go's adjusted-key-hash manglings.
    assert!(
        VerifierKey::parse(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
        .is_err()
    );
    assert!(matches!(
        VerifierKey::parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(KeyError::UnsupportedAlgorithm(_))
    ));
    let b = PETER_SKEY.as_bytes();
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] = m[i].wrapping_add(1);
        if let Ok(s) = String::from_utf8(m) {
            assert!(
                SigningKey::parse(&s).is_err(),
                "accepted a mangled signer key"
            );
        }
    }
}

// Verifies: FC-CRYPTO-3605, FC-CRYPTO-3606, FC-CRYPTO-3706, FC-CRYPTO-3708
#[test]
fn generated_keys_round_trip_and_sign_checkpoints() {
    let k = SigningKey::generate("femtoclaw.local/ledger").unwrap();
    let again = SigningKey::parse(&k.to_private_string()).unwrap();
    assert_eq!(again.verifier(), k.verifier());
    let v = VerifierKey::parse(&k.verifier().to_string()).unwrap();
    assert_eq!(v, k.verifier());
    let cp = Checkpoint {
        origin: "femtoclaw.local/ledger".into(),
        size: 42,
        root: [3u8; 32],
    };
    let note = k.sign_checkpoint(&cp).unwrap();
    assert!(note.starts_with("femtoclaw.local/ledger\n42\nAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n\n\u{2014} femtoclaw.local/ledger "));
    assert_eq!(Checkpoint::open(&note, &v).unwrap(), cp);
    // Another key with the same name is not the pinned key.
    let other = common::other_key();
    let forged = other.sign_checkpoint(&cp).unwrap();
    assert!(Checkpoint::open(&forged, &common::fixed_key().verifier()).is_err());
    // The debug form never shows the secret.
    assert!(!format!("{k:?}").contains(&k.to_private_string()));
}

// Verifies: FC-CRYPTO-3612
#[test]
fn checkpoint_text_is_strict() {
    for bad in [
        "o\n01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "o\n1\nAAAA\n",
        "\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "o\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ] {
        assert!(Checkpoint::parse_text(bad).is_err(), "accepted {bad:?}");
    }
    let ok =
        Checkpoint::parse_text("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n").unwrap();
    assert_eq!(ok.size, 0);
}

// Verifies: FC-CRYPTO-3707, FC-CRYPTO-3512
#[test]
fn key_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let k = femtoclaw_ledger::generate_key(dir.path(), "femtoclaw.local/ledger").unwrap();
    let path = dir.path().join(femtoclaw_ledger::KEY_FILE_NAME);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let loaded = femtoclaw_ledger::load_key(dir.path()).unwrap();
    assert_eq!(loaded.verifier(), k.verifier());
}
