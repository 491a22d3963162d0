//! The knowledge table (diseases, their symptoms, medicines and specialty) and the synthetic
//! patients generated from it.
//!
//! The table is the `disease_correlations` module of the MIT-licensed PyPI package
//! `faker-healthcare-provider` 2.5.0, converted once by `scripts/ml-data` into
//! `data/diseases.json` (licence beside it). **Every patient here is synthetic**: a random
//! subset of one disease's symptoms plus random noise symptoms, drawn with a fixed seed.

use rand::{RngExt as _, SeedableRng as _, seq::IndexedRandom as _};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The converted knowledge table, embedded so prediction needs no file and no network.
pub const DISEASES_JSON: &str = include_str!("../data/diseases.json");

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Symptom {
    pub id: String,
    pub label: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Disease {
    pub name: String,
    pub icd10: String,
    /// Symptom ids (see [`Knowledge::symptoms`]).
    pub symptoms: Vec<String>,
    pub medications: Vec<String>,
    pub specialty: String,
}

/// The knowledge table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Knowledge {
    pub source: String,
    pub license: String,
    pub sha256_of_wheel: String,
    pub disclaimer: String,
    #[serde(rename = "symptom_vocabulary")]
    pub symptoms: Vec<Symptom>,
    pub diseases: Vec<Disease>,
}

impl Knowledge {
    /// The embedded table.
    pub fn embedded() -> Knowledge {
        serde_json::from_str(DISEASES_JSON).expect("the embedded disease table is valid")
    }

    /// SHA-256 of the embedded table (part of every model's provenance).
    pub fn data_sha256() -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(DISEASES_JSON.as_bytes()))
    }

    /// Symptom id → feature index.
    pub fn symptom_index(&self) -> BTreeMap<&str, usize> {
        self.symptoms
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect()
    }

    /// Each disease's symptoms as sorted feature indices.
    pub fn profiles(&self) -> Vec<Vec<u16>> {
        let index = self.symptom_index();
        self.diseases
            .iter()
            .map(|d| {
                let mut v: Vec<u16> = d
                    .symptoms
                    .iter()
                    .map(|s| index[s.as_str()] as u16)
                    .collect();
                v.sort_unstable();
                v
            })
            .collect()
    }
}

/// One synthetic patient: the symptoms shown (sorted feature indices) and the disease.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sample {
    pub symptoms: Vec<u16>,
    pub disease: u32,
}

/// How synthetic patients are drawn.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SynthConfig {
    /// Patients per disease.
    pub per_disease: usize,
    /// The smallest share of the disease's symptoms a patient shows (at least two).
    pub min_share: f64,
    /// Probability of one extra unrelated symptom, and of a second one.
    pub noise_one: f64,
    pub noise_two: f64,
    /// Share of distinct symptom vectors held out for testing.
    pub test_share: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            per_disease: 40,
            min_share: 0.5,
            noise_one: 0.35,
            noise_two: 0.15,
            test_share: 0.2,
        }
    }
}

/// Draws the synthetic patients, deterministically from `seed`.
pub fn synthesise(k: &Knowledge, cfg: &SynthConfig, seed: u64) -> Vec<Sample> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let profiles = k.profiles();
    let n_features = k.symptoms.len() as u16;
    let mut out = Vec::with_capacity(profiles.len() * cfg.per_disease);
    for (d, profile) in profiles.iter().enumerate() {
        let n = profile.len();
        let least = ((n as f64 * cfg.min_share).ceil() as usize).clamp(2.min(n), n);
        for _ in 0..cfg.per_disease {
            let shown = rng.random_range(least..=n);
            let mut symptoms: Vec<u16> = profile.sample(&mut rng, shown).copied().collect();
            let noise = if rng.random_bool(cfg.noise_one) {
                1 + usize::from(rng.random_bool(cfg.noise_two))
            } else {
                0
            };
            while symptoms.len() < shown + noise {
                let s = rng.random_range(0..n_features);
                if !symptoms.contains(&s) && !profile.contains(&s) {
                    symptoms.push(s);
                }
            }
            symptoms.sort_unstable();
            out.push(Sample {
                symptoms,
                disease: d as u32,
            });
        }
    }
    out
}

/// What de-duplication and the split did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SplitStats {
    pub generated: usize,
    /// Identical (symptoms, disease) pairs dropped.
    pub exact_duplicates: usize,
    /// Distinct symptom vectors, and how many of them occur with more than one disease.
    pub distinct_vectors: usize,
    pub ambiguous_vectors: usize,
    pub train: usize,
    pub test: usize,
    /// Symptom vectors present in both train and test (0 by construction).
    pub shared_vectors: usize,
}

/// Drops exact duplicates, then splits by *symptom vector*: every sample with a given vector
/// lands on the same side, so no test vector was seen in training (the mistake that gives
/// the common 41-disease Kaggle table its 97–100 % accuracy).
pub fn split(
    samples: &[Sample],
    test_share: f64,
    seed: u64,
) -> (Vec<Sample>, Vec<Sample>, SplitStats) {
    let mut groups: BTreeMap<&[u16], Vec<u32>> = BTreeMap::new();
    for s in samples {
        groups.entry(&s.symptoms).or_default().push(s.disease);
    }
    let mut stats = SplitStats {
        generated: samples.len(),
        distinct_vectors: groups.len(),
        ..SplitStats::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SPLIT_SALT);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (symptoms, mut diseases) in groups {
        let n = diseases.len();
        diseases.sort_unstable();
        diseases.dedup();
        stats.exact_duplicates += n - diseases.len();
        if diseases.len() > 1 {
            stats.ambiguous_vectors += 1;
        }
        let side = if rng.random_bool(test_share) {
            &mut test
        } else {
            &mut train
        };
        side.extend(diseases.into_iter().map(|disease| Sample {
            symptoms: symptoms.to_vec(),
            disease,
        }));
    }
    stats.train = train.len();
    stats.test = test.len();
    let seen: std::collections::BTreeSet<&[u16]> =
        train.iter().map(|s| s.symptoms.as_slice()).collect();
    stats.shared_vectors = test
        .iter()
        .filter(|s| seen.contains(s.symptoms.as_slice()))
        .count();
    (train, test, stats)
}

/// A constant mixed into the split's seed so it differs from the generator's.
const SPLIT_SALT: u64 = 0x5eed_5717;
