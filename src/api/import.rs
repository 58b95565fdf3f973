//! What importing a dropped file gives the Generate form: the settings read from it, whose
//! format they came from, and what could not be carried over.

use serde::{Deserialize, Serialize};

use super::request::GenerationSettings;

/// The format a file's settings were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportSource {
    /// An Easel PNG's own record: every setting, exactly.
    Easel,
    /// An AUTOMATIC1111 infotext (a PNG's `parameters`, or the text itself), in the a1111 mode.
    A1111,
    /// A ComfyUI graph (API or UI format, from a PNG or a JSON file), in the comfyui mode.
    ComfyUi,
}

/// The settings a file holds, ready for the form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedSettings {
    pub source: ImportSource,
    pub settings: GenerationSettings,
    /// What was not carried over, in words (an A1111 option Easel lacks, a second output, ...).
    pub notes: Vec<String>,
}
