//! The Merkle tree of a batch of receipts, exactly as RFC 9162 §2.1 (Certificate
//! Transparency 2.0) defines it: a leaf's hash is `SHA-256(0x00 || leaf)`, an inner node's
//! `SHA-256(0x01 || left || right)`, the tree over `n` leaves splits at the largest power of
//! two below `n`, and a leaf's inclusion proof is its audit path (§2.1.3.1), checked by the
//! algorithm of §2.1.3.2.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The hash of a leaf whose bytes are `data` (`SHA-256(0x00 || data)`).
pub fn leaf_hash(data: &[u8]) -> Hash {
    Sha256::new_with_prefix([0x00])
        .chain_update(data)
        .finalize()
        .into()
}

/// The hash of an inner node (`SHA-256(0x01 || left || right)`).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new_with_prefix([0x01])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// A tree over a non-empty list of leaf hashes, every level kept to give each leaf its path.
///
/// Built bottom up, pairing neighbours and carrying a level's odd last node up unpaired: this
/// is the tree of RFC 9162's recursive definition (its left subtree is always the complete
/// tree of the largest power of two below `n` leaves), built with `n - 1` node hashes.
#[derive(Debug)]
pub struct Tree {
    /// `levels[0]` are the leaves; the last level is the root alone.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// The tree over `leaves` (hashes from [`leaf_hash`]); `None` when there are none.
    pub fn new(leaves: Vec<Hash>) -> Option<Tree> {
        if leaves.is_empty() {
            return None;
        }
        let mut levels = vec![leaves];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let up = level
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    [alone] => *alone,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
            levels.push(up);
        }
        Some(Tree { levels })
    }

    /// How many leaves.
    pub fn size(&self) -> usize {
        self.levels[0].len()
    }

    /// The root hash (RFC 9162's `MTH`).
    pub fn root(&self) -> Hash {
        self.levels[self.levels.len() - 1][0]
    }

    /// The audit path of the leaf at `index` (RFC 9162's `PATH(index, D_n)`), leaf side
    /// first; empty for an index past the end.
    pub fn path(&self, index: usize) -> Vec<Hash> {
        let mut path = Vec::with_capacity(self.levels.len() - 1);
        let mut at = index;
        for level in &self.levels[..self.levels.len() - 1] {
            if at >= level.len() {
                return Vec::new();
            }
            // A node without a right neighbour is carried up as it is: no hash on the path.
            if let Some(sibling) = level.get(at ^ 1) {
                path.push(*sibling);
            }
            at /= 2;
        }
        path
    }
}

/// Why an inclusion proof does not fit its tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("the path has {given} hashes; a leaf at index {index} of {size} needs {needed}")]
    PathLength {
        index: u64,
        size: u64,
        given: usize,
        needed: usize,
    },
}

/// The longest audit path of any tree of at most 2^64 leaves: a longer one is refused before
/// it is decoded.
pub const PATH_MAX: usize = 64;

/// The root that `leaf` at `index` of a tree of `size` leaves and its audit `path` lead to
/// (RFC 9162 §2.1.3.2); the proof holds when it equals the signed root.
pub fn root_from_path(
    index: u64,
    size: u64,
    leaf: Hash,
    path: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let needed = path_length(index, size);
    if path.len() != needed {
        return Err(ProofError::PathLength {
            index,
            size,
            given: path.len(),
            needed,
        });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    Ok(r)
}

/// How many hashes the audit path of the leaf at `index` of `size` leaves has: the steps of
/// §2.1.3.2's loop until `sn` reaches 0.
fn path_length(index: u64, size: u64) -> usize {
    let (mut f, mut s, mut length) = (index, size - 1, 0);
    while s > 0 {
        length += 1;
        if f & 1 == 1 || f == s {
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        }
        f >>= 1;
        s >>= 1;
    }
    length
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9162 §2.1.1's MTH, by its recursive definition.
    fn mth(data: &[Vec<u8>]) -> Hash {
        match data.len() {
            0 => Sha256::digest(b"").into(),
            1 => leaf_hash(&data[0]),
            n => {
                let k = split(n);
                node_hash(&mth(&data[..k]), &mth(&data[k..]))
            }
        }
    }

    /// RFC 9162 §2.1.3.1's PATH(m, D[n]), by its recursive definition.
    fn rfc_path(m: usize, data: &[Vec<u8>]) -> Vec<Hash> {
        let n = data.len();
        if n == 1 {
            return Vec::new();
        }
        let k = split(n);
        if m < k {
            let mut path = rfc_path(m, &data[..k]);
            path.push(mth(&data[k..]));
            path
        } else {
            let mut path = rfc_path(m - k, &data[k..]);
            path.push(mth(&data[..k]));
            path
        }
    }

    /// The largest power of two smaller than `n` (n > 1).
    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn data(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("receipt {i}").into_bytes())
            .collect()
    }

    fn tree(data: &[Vec<u8>]) -> Tree {
        Tree::new(data.iter().map(|d| leaf_hash(d)).collect()).unwrap()
    }

    #[test]
    fn the_root_and_every_path_are_rfc_9162s_for_sizes_1_to_17() {
        for n in 1..=17 {
            let data = data(n);
            let tree = tree(&data);
            assert_eq!(tree.size(), n);
            assert_eq!(tree.root(), mth(&data), "root of {n}");
            for m in 0..n {
                let path = tree.path(m);
                assert_eq!(path, rfc_path(m, &data), "path of {m} in {n}");
                let leaf = leaf_hash(&data[m]);
                assert_eq!(
                    root_from_path(m as u64, n as u64, leaf, &path),
                    Ok(mth(&data)),
                    "proof of {m} in {n}"
                );
            }
        }
    }

    #[test]
    fn a_known_tree_of_three_has_the_rfc_shape() {
        // MTH(d0, d1, d2) = H(0x01 || H(0x01 || L0 || L1) || L2): d2 is carried up unpaired.
        let data = data(3);
        let l: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        let tree = tree(&data);
        assert_eq!(tree.root(), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_eq!(tree.path(2), vec![node_hash(&l[0], &l[1])]);
        assert_eq!(tree.path(0), vec![l[1], l[2]]);
        let mut expected = Sha256::new();
        expected.update([0x00]);
        expected.update(b"receipt 0");
        assert_eq!(
            l[0],
            <Hash>::from(expected.finalize()),
            "leaf = SHA-256(0x00 || d)"
        );
    }

    #[test]
    fn a_tampered_proof_leads_elsewhere_or_is_refused() {
        for n in 1..=17u64 {
            let data = data(n as usize);
            let tree = tree(&data);
            let root = tree.root();
            for m in 0..n {
                let leaf = leaf_hash(&data[m as usize]);
                let path = tree.path(m as usize);
                let other = leaf_hash(b"something else");
                assert_ne!(root_from_path(m, n, other, &path), Ok(root), "leaf {m}/{n}");
                for i in 0..path.len() {
                    let mut bad = path.clone();
                    bad[i][0] ^= 1;
                    assert_ne!(
                        root_from_path(m, n, leaf, &bad),
                        Ok(root),
                        "hash {i} {m}/{n}"
                    );
                }
                if n > 1 {
                    // Another index in the same tree, or the same in another size, fails.
                    let elsewhere = (m + 1) % n;
                    assert_ne!(root_from_path(elsewhere, n, leaf, &path), Ok(root));
                    let mut short = path.clone();
                    short.pop();
                    assert!(matches!(
                        root_from_path(m, n, leaf, &short),
                        Err(ProofError::PathLength { .. })
                    ));
                }
                let mut long = path.clone();
                long.push(root);
                assert!(matches!(
                    root_from_path(m, n, leaf, &long),
                    Err(ProofError::PathLength { .. })
                ));
                assert_eq!(
                    root_from_path(n, n, leaf, &path),
                    Err(ProofError::IndexOutOfRange { index: n, size: n })
                );
            }
        }
    }

    #[test]
    fn no_leaves_make_no_tree() {
        assert!(Tree::new(Vec::new()).is_none());
        assert!(tree(&data(4)).path(4).is_empty());
    }
}
