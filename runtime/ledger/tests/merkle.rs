//! RFC 6962 Merkle tree: the transparency-dev/merkle probe vectors and reference tree,
//! plus generated proofs checked against a naive recursive definition.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use femtoclaw_ledger::merkle::{
    EMPTY_ROOT, Hash, MerkleTree, leaf_hash, node_hash, root_from_leaf_hashes, verify_consistency,
    verify_inclusion,
};

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/merkle")
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            json_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

fn b64(v: &serde_json::Value) -> Vec<u8> {
    STANDARD.decode(v.as_str().unwrap_or("")).unwrap()
}

fn b64_list(v: &serde_json::Value) -> Vec<Vec<u8>> {
    v.as_array()
        .map(|a| a.iter().map(b64).collect())
        .unwrap_or_default()
}

// Verifies: FC-CRYPTO-3602
#[test]
fn transparency_dev_inclusion_probes() {
    let mut files = Vec::new();
    json_files(&vectors().join("inclusion"), &mut files);
    assert!(files.len() > 80, "inclusion vectors present");
    let mut happy = 0;
    for f in files {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let got = verify_inclusion(
            v["leafIdx"].as_u64().unwrap(),
            v["treeSize"].as_u64().unwrap(),
            &b64(&v["leafHash"]),
            &b64_list(&v["proof"]),
            &b64(&v["root"]),
        );
        let want_err = v["wantErr"].as_bool().unwrap();
        assert_eq!(got.is_err(), want_err, "{}: {got:?}", f.display());
        happy += usize::from(!want_err);
    }
    assert!(happy >= 5);
}

// Verifies: FC-CRYPTO-3603
#[test]
fn transparency_dev_consistency_probes() {
    let mut files = Vec::new();
    json_files(&vectors().join("consistency"), &mut files);
    assert!(files.len() > 80, "consistency vectors present");
    for f in files {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let got = verify_consistency(
            v["size1"].as_u64().unwrap(),
            v["size2"].as_u64().unwrap(),
            &b64_list(&v["proof"]),
            &b64(&v["root1"]),
            &b64(&v["root2"]),
        );
        assert_eq!(
            got.is_err(),
            v["wantErr"].as_bool().unwrap(),
            "{}: {got:?}",
            f.display()
        );
    }
}

// Verifies: FC-MEM-2308, FC-CRYPTO-3601, FC-CRYPTO-4601, FC-FORMAL-5003
#[test]
fn reference_tree_roots_match_for_every_size() {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vectors().join("reference-tree.json")).unwrap())
            .unwrap();
    let inputs: Vec<Vec<u8>> = v["leafInputsHex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| hex::decode(s.as_str().unwrap()).unwrap())
        .collect();
    let roots: Vec<Vec<u8>> = v["rootHashesBySizeHex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| hex::decode(s.as_str().unwrap()).unwrap())
        .collect();
    let leaves: Vec<Vec<u8>> = v["leafHashesHex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| hex::decode(s.as_str().unwrap()).unwrap())
        .collect();
    let mut tree = MerkleTree::new();
    assert_eq!(tree.root().to_vec(), roots[0]);
    assert_eq!(EMPTY_ROOT.to_vec(), roots[0]);
    for (i, input) in inputs.iter().enumerate() {
        let l = leaf_hash(input);
        assert_eq!(l.to_vec(), leaves[i]);
        tree.push(l);
        assert_eq!(tree.root().to_vec(), roots[i + 1], "root at size {}", i + 1);
    }
    for (size, root) in roots.iter().enumerate() {
        assert_eq!(tree.root_at(size as u64).unwrap().to_vec(), *root);
        let hashes: Vec<Hash> = inputs[..size].iter().map(|x| leaf_hash(x)).collect();
        assert_eq!(root_from_leaf_hashes(&hashes).to_vec(), *root);
    }
}

/// MTH straight from RFC 6962 §2.1, as the reference.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

// Verifies: FC-CRYPTO-3601, FC-CRYPTO-3602, FC-CRYPTO-3603
#[test]
fn generated_proofs_verify_for_every_index_and_size_up_to_70() {
    let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    let tree = MerkleTree::from_leaf_hashes(leaves.iter().copied());
    for size in 1..=70u64 {
        let root = mth(&leaves[..size as usize]);
        assert_eq!(tree.root_at(size).unwrap(), root, "root at {size}");
        for index in 0..size {
            let p = tree.inclusion_proof(index, size).unwrap();
            verify_inclusion(index, size, &leaves[index as usize], &p, &root).unwrap();
            // A wrong leaf or a wrong index fails.
            let other = &leaves[(index as usize + 1) % 70];
            assert!(verify_inclusion(index, size, other, &p, &root).is_err());
            if size > 1 {
                assert!(
                    verify_inclusion((index + 1) % size, size, &leaves[index as usize], &p, &root)
                        .is_err()
                );
            }
        }
        for size1 in 1..=size {
            let p = tree.consistency_proof(size1, size).unwrap();
            let root1 = mth(&leaves[..size1 as usize]);
            verify_consistency(size1, size, &p, &root1, &root).unwrap();
            if size1 < size {
                let mut bad = p.clone();
                bad[0][0] ^= 1;
                assert!(verify_consistency(size1, size, &bad, &root1, &root).is_err());
                assert!(verify_consistency(size1, size, &p, &root, &root1).is_err());
            }
        }
    }
}

// Verifies: FC-CRYPTO-3604, FC-CRYPTO-4601
#[test]
fn truncating_the_tree_restores_earlier_roots() {
    let leaves: Vec<Hash> = (0..37u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut tree = MerkleTree::from_leaf_hashes(leaves.iter().copied());
    for size in (0..37u64).rev() {
        tree.truncate(size);
        assert_eq!(tree.len(), size);
        assert_eq!(tree.root(), mth(&leaves[..size as usize]));
    }
    for l in &leaves {
        tree.push(*l);
    }
    assert_eq!(tree.root(), mth(&leaves));
}
