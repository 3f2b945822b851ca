//! Mask2Former in the browser: the engine's inference path on WebGPU, exported to JavaScript
//! through wasm-bindgen (`web/index.html` is the demo page that uses it).
//!
//! ```js
//! import init, { WebSegmenter } from "./pkg/mask2former_web.js";
//! await init();
//! const seg = await WebSegmenter.load(configText, weightsBytes, categoriesText, preprocessorText);
//! const result = await seg.segment(imageBytes, "photo.jpg", "panoptic");
//! // result.width, result.height, result.overlay_rgba(), result.segments_json(), result.millis
//! ```
//!
//! The runtime opens with [`RuntimeOptions::web`]: portable features and WebGPU's default
//! limits, what any browser with WebGPU gives, so a page that works on one machine works on all.

pub mod compare;

use std::cell::RefCell;
use std::rc::Rc;

use mask2former::image_input::decode_image;
use mask2former::model::ModelFiles;
use mask2former::segment::{self, Segmentation, Segmenter, Task};
use mask2former::{Runtime, RuntimeOptions};
use wasm_bindgen::prelude::*;
use web_time::Instant;

/// Panics reach the browser console with their message instead of "unreachable executed".
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// A loaded model on the page's WebGPU device.
#[wasm_bindgen]
pub struct WebSegmenter {
    inner: Rc<RefCell<Segmenter>>,
    adapter: String,
}

#[wasm_bindgen]
impl WebSegmenter {
    /// Opens WebGPU and builds the model from a checkpoint folder's files as fetched:
    /// `config.json` text, `model.safetensors` bytes, and the texts of `categories.json` and
    /// `preprocessor_config.json` when the folder has them.
    pub async fn load(
        config: String,
        weights: Vec<u8>,
        categories: Option<String>,
        preprocessor: Option<String>,
    ) -> Result<WebSegmenter, JsError> {
        let rt = Runtime::open(&RuntimeOptions::web()).await.map_err(js)?;
        let files = ModelFiles {
            config: &config,
            weights: &weights,
            categories: categories.as_deref(),
            preprocessor: preprocessor.as_deref(),
        };
        let seg = Segmenter::from_files(&rt, &files).map_err(js)?;
        Ok(WebSegmenter {
            inner: Rc::new(RefCell::new(seg)),
            adapter: rt.describe(),
        })
    }

    /// The adapter the model runs on, with the features the engine uses.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// Segments an encoded image (PNG or JPEG bytes; `name` names it in errors); `task` is
    /// `panoptic`, `instance` or `semantic`. A truncated JPEG is an error, as in the CLI. One
    /// segmentation at a time: a second call while one runs is an error.
    // The model is borrowed for the whole segmentation on purpose: a second call made while
    // this one awaits its readback gets the clear error below instead of a shared model.
    #[allow(clippy::await_holding_refcell_ref)]
    pub async fn segment(
        &self,
        image: Vec<u8>,
        name: String,
        task: String,
    ) -> Result<SegmentResult, JsError> {
        let task = parse_task(&task)?;
        let image = decode_image(name.as_ref(), &image, false)
            .map_err(js)?
            .image;
        let mut seg = self
            .inner
            .try_borrow_mut()
            .map_err(|_| JsError::new("a segmentation is already running on this model"))?;
        let t0 = Instant::now();
        let result = seg.segment_async(&image, task).await.map_err(js)?;
        let millis = t0.elapsed().as_secs_f64() * 1e3;
        Ok(SegmentResult::new(
            &image.to_rgb8(),
            task,
            &result,
            &seg,
            millis,
        ))
    }
}

/// One image's result, ready for a canvas and a table.
#[wasm_bindgen]
pub struct SegmentResult {
    width: u32,
    height: u32,
    overlay: Vec<u8>,
    ids: Vec<u32>,
    segments: String,
    millis: f64,
}

impl SegmentResult {
    fn new(
        image: &image::RgbImage,
        task: Task,
        result: &Segmentation,
        seg: &Segmenter,
        millis: f64,
    ) -> Self {
        let segments = result.segments(seg.labels());
        let overlay = segment::overlay(image, task, result, &segments);
        let rgba = image::DynamicImage::ImageRgb8(overlay).to_rgba8();
        Self {
            width: rgba.width(),
            height: rgba.height(),
            overlay: rgba.into_raw(),
            ids: result.id_map(),
            segments: serde_json::to_string(&segments).expect("segments serialise"),
            millis,
        }
    }
}

#[wasm_bindgen]
impl SegmentResult {
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> u32 {
        self.width
    }
    #[wasm_bindgen(getter)]
    pub fn height(&self) -> u32 {
        self.height
    }
    /// Time from the pre-processed image to the post-processed result, in milliseconds.
    #[wasm_bindgen(getter)]
    pub fn millis(&self) -> f64 {
        self.millis
    }
    /// The overlay as RGBA rows (for `new ImageData(...)`).
    pub fn overlay_rgba(&self) -> Vec<u8> {
        self.overlay.clone()
    }
    /// Segment id per pixel, row-major (0: no segment).
    pub fn ids(&self) -> Vec<u32> {
        self.ids.clone()
    }
    /// The segments as JSON: id, label_id, label_name, is_thing, score, area, bbox.
    pub fn segments_json(&self) -> String {
        self.segments.clone()
    }
}

fn parse_task(task: &str) -> Result<Task, JsError> {
    match task {
        "panoptic" => Ok(Task::Panoptic),
        "instance" => Ok(Task::Instance),
        "semantic" => Ok(Task::Semantic),
        other => Err(JsError::new(&format!(
            "task `{other}`: expected panoptic, instance or semantic"
        ))),
    }
}

fn js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}
