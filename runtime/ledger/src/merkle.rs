//! RFC 6962 / RFC 9162 Merkle tree: leaf and node hashing, roots of any size, inclusion
//! and consistency proofs (generation and verification).

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Leaf hash: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// Interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 1;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// Root of the tree over `leaves` (leaf hashes), computed directly with a stack of
/// perfect subtrees. This is the plain reference computation: no proofs, no storage.
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    let mut stack: Vec<(u32, Hash)> = Vec::with_capacity(64);
    for leaf in leaves {
        let mut node = (0u32, *leaf);
        while let Some(top) = stack.last() {
            if top.0 != node.0 {
                break;
            }
            let Some(left) = stack.pop() else { break };
            node = (node.0 + 1, node_hash(&left.1, &node.1));
        }
        stack.push(node);
    }
    let mut acc: Option<Hash> = None;
    while let Some((_, h)) = stack.pop() {
        acc = Some(match acc {
            None => h,
            Some(right) => node_hash(&h, &right),
        });
    }
    acc.unwrap_or(EMPTY_ROOT)
}

/// Why a proof cannot be made or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The index is not below the tree size.
    #[error("index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The tree sizes are not usable (larger than the tree, decreasing, or zero where a
    /// consistency proof is meaningless).
    #[error("invalid tree sizes {size1} and {size2}")]
    BadSizes {
        /// First (older) size.
        size1: u64,
        /// Second (newer) size.
        size2: u64,
    },
    /// A hash is not 32 bytes long.
    #[error("a hash is {len} bytes long, not 32")]
    BadHashLength {
        /// Its length.
        len: usize,
    },
    /// The proof has the wrong number of hashes.
    #[error("proof has {got} hashes, expected {want}")]
    WrongLength {
        /// Hashes given.
        got: usize,
        /// Hashes the sizes call for.
        want: usize,
    },
    /// The proof does not lead to the expected root.
    #[error("proof does not match the root")]
    RootMismatch,
}

/// An append-only Merkle tree that keeps every complete subtree hash, so that the root
/// at any earlier size and proofs between any sizes are computed in O(log² n) time.
///
/// Memory: about two hashes per leaf.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    /// `levels[k][i]` is the hash of the perfect subtree over leaves `[i·2^k, (i+1)·2^k)`.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree over the given leaf hashes.
    pub fn from_leaf_hashes(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut t = Self::new();
        for l in leaves {
            t.push(l);
        }
        t
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut level = 0;
        let mut node = leaf;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else {
                return;
            };
            row.push(node);
            if row.len() % 2 == 1 {
                return;
            }
            let n = row.len();
            node = node_hash(&row[n - 2], &row[n - 1]);
            level += 1;
        }
    }

    /// Removes every leaf at or after `size`.
    pub fn truncate(&mut self, size: u64) {
        for (k, row) in self.levels.iter_mut().enumerate() {
            let keep = usize::try_from(size >> k).unwrap_or(usize::MAX);
            row.truncate(keep);
        }
        while self.levels.last().is_some_and(Vec::is_empty) {
            self.levels.pop();
        }
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        let i = usize::try_from(index).ok()?;
        self.levels.first()?.get(i).copied()
    }

    /// All leaf hashes.
    pub fn leaves(&self) -> &[Hash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        self.subtree(0, self.len())
    }

    /// The root of the tree made of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        (size <= self.len()).then(|| self.subtree(0, size))
    }

    /// MTH(D[start:end]) for a range that the RFC 6962 recursion produces (start is a
    /// multiple of the largest power of two below `end - start`), or any range at all,
    /// more slowly.
    fn subtree(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n == 0 {
            return EMPTY_ROOT;
        }
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let k = n.trailing_zeros() as usize;
            if let Some(h) = usize::try_from(start >> k)
                .ok()
                .and_then(|i| self.levels.get(k)?.get(i))
            {
                return *h;
            }
        }
        if n == 1 {
            // Out of range: cannot happen for callers that check sizes first.
            return EMPTY_ROOT;
        }
        let k = split(n);
        node_hash(
            &self.subtree(start, start + k),
            &self.subtree(start + k, end),
        )
    }

    /// Inclusion proof (RFC 6962 §2.1.1 PATH) for leaf `index` in the tree of `size`
    /// leaves, from the leaf's sibling up to the root's child.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if size > self.len() || index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut out = Vec::new();
        self.path(index, 0, size, &mut out);
        Ok(out)
    }

    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.path(m - k, start + k, end, out);
            out.push(self.subtree(start, start + k));
        }
    }

    /// Consistency proof (RFC 6962 §2.1.2 PROOF) from the tree of `size1` leaves to the
    /// tree of `size2` leaves. Empty when the sizes are equal.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, ProofError> {
        if size1 > size2 || size2 > self.len() || size1 == 0 {
            return Err(ProofError::BadSizes { size1, size2 });
        }
        let mut out = Vec::new();
        if size1 < size2 {
            self.subproof(size1, 0, size2, true, &mut out);
        }
        Ok(out)
    }

    fn subproof(&self, m: u64, start: u64, end: u64, b: bool, out: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !b {
                out.push(self.subtree(start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, b, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, out);
            out.push(self.subtree(start, start + k));
        }
    }
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

fn to_hash(b: &[u8]) -> Result<Hash, ProofError> {
    Hash::try_from(b).map_err(|_| ProofError::BadHashLength { len: b.len() })
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2): that `leaf_hash` is leaf `index` of
/// the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[P],
    root: &[u8],
) -> Result<(), ProofError> {
    let computed = root_from_inclusion(index, size, leaf_hash, proof)?;
    if computed.as_slice() == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// The root that an inclusion proof leads to.
pub fn root_from_inclusion<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[P],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut r = to_hash(leaf_hash)?;
    let want = inclusion_proof_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want,
        });
    }
    let mut fnode = index;
    let mut snode = size - 1;
    for p in proof {
        let p = to_hash(p.as_ref())?;
        if snode == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want,
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(&p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, &p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want,
        });
    }
    Ok(r)
}

/// Number of hashes in an inclusion proof for `index` in a tree of `size`.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    // Inner part: levels below where the paths to `index` and `size - 1` diverge;
    // border part: one hash per left sibling above.
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    inner + border
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2): that the tree of `size2` leaves
/// with root `root2` extends the tree of `size1` leaves with root `root1`.
///
/// A proof from the empty tree is refused as meaningless; equal sizes need an empty
/// proof and equal roots.
pub fn verify_consistency<P: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    proof: &[P],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size2 < size1 || size1 == 0 {
        return Err(ProofError::BadSizes { size1, size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength { got: 0, want: 1 });
    }
    let first = to_hash(root1)?;
    let second = to_hash(root2)?;
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(first);
    }
    for p in proof {
        path.push(to_hash(p.as_ref())?);
    }
    let mut fnode = size1 - 1;
    let mut snode = size2 - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let Some((seed, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength { got: 0, want: 1 });
    };
    let mut fr = *seed;
    let mut sr = *seed;
    for c in rest {
        if snode == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: proof.len() - 1,
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: proof.len() + 1,
        });
    }
    if fr == first && sr == second {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}
