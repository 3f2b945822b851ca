//! The dataset spec that `train` and `evaluate` share (`--data`), and opening it: the layout of
//! a dataset root is detected from the files as the official archives unpack them, and what was
//! found is said in one line.
//!
//! ```text
//! synthetic[:N[:SEED]]                       the generated panoptic dataset
//! ROOT                                       detect the kind and layout below
//! coco-panoptic:ROOT                         annotations/panoptic_<split>.json + annotations/panoptic_<split>/
//!                                            (or ROOT/panoptic_<split>/) + <split>/
//! coco-instance:ROOT                         annotations/instances_<split>.json + <split>/
//! ade20k:ROOT                                [ADEChallengeData2016/]images/<split>/ + annotations/<split>/
//! cityscapes:ROOT                            leftImg8bit/<split>/<city>/ + gtFine/<split>/<city>/
//! semantic:DIR                               DIR/images/ + DIR/labels/ (+ classes.txt)
//! coco-instance:ANNOTATIONS.json,IMAGES      explicit files
//! coco-panoptic:ANNOTATIONS.json,PNGS,IMAGES
//! semantic:IMAGES,LABELS
//! ```
//! The split defaults to COCO's `val2017` / `train2017`, ADE20K's `validation` / `training`,
//! Cityscapes' `val` / `train` (evaluation / training).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::coco_instance::CocoInstance;
use super::coco_panoptic::CocoPanoptic;
use super::records::BadRecords;
use super::semantic::SemanticFolder;
use super::{synthetic, DataError};

/// Default size of the synthetic validation split.
pub const SYNTHETIC_VAL_COUNT: usize = 64;

/// The kinds of dataset a root can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    CocoPanoptic,
    CocoInstance,
    Ade20k,
    Cityscapes,
    /// `DIR/images/` + `DIR/labels/`.
    Semantic,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::CocoPanoptic,
        Kind::CocoInstance,
        Kind::Ade20k,
        Kind::Cityscapes,
        Kind::Semantic,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Kind::CocoPanoptic => "coco-panoptic",
            Kind::CocoInstance => "coco-instance",
            Kind::Ade20k => "ade20k",
            Kind::Cityscapes => "cityscapes",
            Kind::Semantic => "semantic",
        }
    }
}

/// Which data to read (`--data`).
#[derive(Clone, Debug, PartialEq)]
pub enum DataSpec {
    /// The synthetic panoptic dataset, generated in memory (`count` images of the validation
    /// split for evaluation; training uses its own sizes).
    Synthetic {
        count: usize,
        seed: u64,
    },
    /// A dataset root; `kind: None` detects the kind. `split: None` takes the default of the
    /// [`Role`].
    Root {
        kind: Option<Kind>,
        root: PathBuf,
        split: Option<String>,
    },
    CocoInstanceFiles {
        annotations: PathBuf,
        images: PathBuf,
    },
    CocoPanopticFiles {
        annotations: PathBuf,
        pngs: PathBuf,
        images: PathBuf,
    },
    SemanticFiles {
        images: PathBuf,
        labels: PathBuf,
    },
}

const SYNTAX: &str =
    "expected synthetic[:N[:SEED]], ROOT, coco-panoptic:ROOT, coco-instance:ROOT, \
     ade20k:ROOT, cityscapes:ROOT, semantic:DIR, coco-instance:ANNOTATIONS.json,IMAGES, \
     coco-panoptic:ANNOTATIONS.json,PNGS,IMAGES or semantic:IMAGES,LABELS";

impl DataSpec {
    /// A root of a known kind, default split.
    pub fn root(kind: Kind, root: impl Into<PathBuf>) -> Self {
        DataSpec::Root {
            kind: Some(kind),
            root: root.into(),
            split: None,
        }
    }

    /// Sets the split (`--split`); an error for specs without splits.
    pub fn with_split(self, split: &str) -> Result<Self, DataError> {
        match self {
            DataSpec::Root { kind, root, .. } => Ok(DataSpec::Root {
                kind,
                root,
                split: Some(split.to_string()),
            }),
            other => Err(DataError::Invalid(format!(
                "--split {split:?}: data {other} has no splits (give a dataset root)"
            ))),
        }
    }
}

impl std::fmt::Display for DataSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSpec::Synthetic { count, seed } => write!(f, "synthetic:{count}:{seed}"),
            DataSpec::Root { kind, root, split } => {
                if let Some(k) = kind {
                    write!(f, "{}:", k.name())?;
                }
                write!(f, "{}", root.display())?;
                if let Some(s) = split {
                    write!(f, " (split {s})")?;
                }
                Ok(())
            }
            DataSpec::CocoInstanceFiles {
                annotations,
                images,
            } => write!(
                f,
                "coco-instance:{},{}",
                annotations.display(),
                images.display()
            ),
            DataSpec::CocoPanopticFiles {
                annotations,
                pngs,
                images,
            } => write!(
                f,
                "coco-panoptic:{},{},{}",
                annotations.display(),
                pngs.display(),
                images.display()
            ),
            DataSpec::SemanticFiles { images, labels } => {
                write!(f, "semantic:{},{}", images.display(), labels.display())
            }
        }
    }
}

impl FromStr for DataSpec {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        let bad = |why: String| DataError::Invalid(format!("data spec {s:?}: {why}; {SYNTAX}"));
        if s.is_empty() {
            return Err(bad("empty".into()));
        }
        let Some((prefix, rest)) = s.split_once(':') else {
            if Kind::ALL.iter().any(|k| k.name() == s) {
                return Err(bad(format!("{s} needs a path: {s}:ROOT")));
            }
            return Ok(if s == "synthetic" {
                DataSpec::Synthetic {
                    count: SYNTHETIC_VAL_COUNT,
                    seed: 0,
                }
            } else {
                DataSpec::Root {
                    kind: None,
                    root: s.into(),
                    split: None,
                }
            });
        };
        if prefix == "synthetic" {
            let mut parts = rest.split(':').filter(|p| !p.is_empty());
            let mut num = |default: u64| {
                parts.next().map_or(Ok(default), |v| {
                    v.parse::<u64>()
                        .map_err(|_| bad(format!("{v:?} is not a number")))
                })
            };
            let count = num(SYNTHETIC_VAL_COUNT as u64)? as usize;
            let seed = num(0)?;
            return Ok(DataSpec::Synthetic { count, seed });
        }
        let Some(kind) = Kind::ALL.into_iter().find(|k| k.name() == prefix) else {
            return Err(bad(format!("unknown data spec kind {prefix:?}")));
        };
        if rest.is_empty() {
            return Err(bad(format!("{prefix} needs a path")));
        }
        let parts: Vec<PathBuf> = rest.split(',').map(PathBuf::from).collect();
        Ok(match (kind, parts.as_slice()) {
            (_, [_]) => DataSpec::root(kind, rest),
            (Kind::CocoInstance, [a, i]) => DataSpec::CocoInstanceFiles {
                annotations: a.clone(),
                images: i.clone(),
            },
            (Kind::CocoPanoptic, [a, p, i]) => DataSpec::CocoPanopticFiles {
                annotations: a.clone(),
                pngs: p.clone(),
                images: i.clone(),
            },
            (Kind::Semantic, [i, l]) => DataSpec::SemanticFiles {
                images: i.clone(),
                labels: l.clone(),
            },
            _ => {
                return Err(bad(format!(
                    "wrong number of comma-separated paths for {prefix}"
                )))
            }
        })
    }
}

/// What the data is opened for; it picks the default split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Train,
    Val,
}

/// Options of [`open`].
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    pub role: Role,
    /// Report bad records and leave them out instead of failing.
    pub skip_bad: bool,
    /// ADE-style label reduction for `semantic:` data (ADE20K always has it).
    pub reduce_labels: bool,
}

/// An opened dataset.
#[derive(Clone, Debug)]
pub enum Dataset {
    Synthetic(synthetic::Dataset),
    Panoptic(CocoPanoptic),
    Instance(CocoInstance),
    Semantic(SemanticFolder),
}

impl Dataset {
    pub fn len(&self) -> usize {
        match self {
            Dataset::Synthetic(d) => d.len(),
            Dataset::Panoptic(d) => d.len(),
            Dataset::Instance(d) => d.len(),
            Dataset::Semantic(d) => d.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An opened dataset, the line that says what was found, and the bad records left out.
#[derive(Clone, Debug)]
pub struct Opened {
    pub dataset: Dataset,
    pub summary: String,
    pub skipped: Vec<String>,
}

/// Opens the data of a spec: finds the files, checks every record (headers of the images and
/// PNGs only) and fails before any work unless `skip_bad`.
pub fn open(spec: &DataSpec, opts: &OpenOptions) -> Result<Opened, DataError> {
    let mut bad = BadRecords::new();
    let (dataset, place) = match spec {
        DataSpec::Synthetic { count, seed } => {
            let split = match opts.role {
                Role::Train => synthetic::Split::Train,
                Role::Val => synthetic::Split::Val,
            };
            let ds = synthetic::Dataset::new(*seed, split, *count);
            let place = format!("synthetic {} split, seed {seed}", split.name());
            (Dataset::Synthetic(ds), place)
        }
        DataSpec::Root { kind, root, split } => {
            let layout = super::layout::detect(root, *kind, split.as_deref(), opts.role)?;
            let place = layout.describe();
            (layout.open(opts, &mut bad)?, place)
        }
        DataSpec::CocoInstanceFiles {
            annotations,
            images,
        } => {
            need_dir(images, "the image folder")?;
            let ds = CocoInstance::open_checked(annotations, images, true, &mut bad)?;
            (Dataset::Instance(ds), format!("COCO instance files {spec}"))
        }
        DataSpec::CocoPanopticFiles {
            annotations,
            pngs,
            images,
        } => {
            need_dir(pngs, "the panoptic PNG folder")?;
            need_dir(images, "the image folder")?;
            let ds = CocoPanoptic::open_checked(annotations, pngs, images, true, &mut bad)?;
            (Dataset::Panoptic(ds), format!("COCO panoptic files {spec}"))
        }
        DataSpec::SemanticFiles { images, labels } => {
            need_dir(images, "the image folder")?;
            let mut ds = SemanticFolder::open_pair(images, labels, opts.reduce_labels, &mut bad)?;
            ds.check_sizes(&mut bad);
            (Dataset::Semantic(ds), format!("semantic files {spec}"))
        }
    };
    let skipped = bad.finish(opts.skip_bad)?;
    if dataset.is_empty() {
        return Err(DataError::Layout(format!(
            "{place}: no images found{}",
            if skipped.is_empty() {
                String::new()
            } else {
                format!(" ({} bad records left out)", skipped.len())
            }
        )));
    }
    let mut summary = format!("{place}: {}", counts(&dataset));
    if !skipped.is_empty() {
        summary += &format!("; {} bad record(s) left out", skipped.len());
    }
    Ok(Opened {
        dataset,
        summary,
        skipped,
    })
}

pub(crate) fn need_dir(path: &Path, what: &str) -> Result<(), DataError> {
    if path.is_dir() {
        Ok(())
    } else {
        Err(DataError::Layout(format!(
            "{}: expected {what} there, found {}",
            path.display(),
            if path.exists() { "a file" } else { "nothing" }
        )))
    }
}

/// "N images, M annotations, K classes (T things)".
fn counts(ds: &Dataset) -> String {
    let classes = |c: &super::Categories| {
        let things = c.list().iter().filter(|c| c.isthing).count();
        format!("{} classes ({things} things)", c.len())
    };
    match ds {
        Dataset::Synthetic(d) => {
            format!("{} images, {}", d.len(), classes(&synthetic::categories()))
        }
        Dataset::Panoptic(d) => format!(
            "{} images, {} segments, {}",
            d.len(),
            d.segment_count(),
            classes(d.categories())
        ),
        Dataset::Instance(d) => format!(
            "{} images, {} annotations, {}",
            d.len(),
            d.annotation_count(),
            classes(d.categories())
        ),
        Dataset::Semantic(d) => format!(
            "{} images with label maps, {}",
            d.len(),
            match (d.num_classes(), d.class_names()) {
                (Some(k), Some(_)) => format!("{k} named classes"),
                (Some(k), None) => format!("{k} classes"),
                (None, _) => "classes counted from the labels".into(),
            }
        ),
    }
}
