//! ComfyUI's workflow formats as Easel reads them: the node classes Easel runs ([`nodes`]), an
//! API-format graph validated and translated into Easel requests ([`graph`]), and the UI format
//! (nodes and links, as ComfyUI's frontend saves it) converted to the API format ([`workflow`]).
//! Used by the ComfyUI API and by importing a dropped PNG or JSON file.

pub mod graph;
pub mod nodes;
pub mod workflow;
