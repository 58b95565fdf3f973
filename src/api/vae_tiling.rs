//! The VAE tiling setting: whether a large picture is decoded (and encoded) in overlapping tiles,
//! which bounds the memory of the VAE by one tile's whatever the picture's size.

use serde::{Deserialize, Serialize};

use super::Compat;

/// How the VAE runs over a picture. Serialized as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaeTiling {
    /// In tiles above 512x512 pixels in the `diffusers` compat mode; whole in `a1111` and
    /// `comfyui`, whose tools decode whole, so their pictures stay theirs.
    #[default]
    Auto,
    /// In tiles whenever the picture is larger than one tile (diffusers' `enable_tiling()`).
    On,
    /// Always whole (the picture as diffusers, A1111 and ComfyUI make it by default).
    Off,
}

impl VaeTiling {
    pub const ALL: [VaeTiling; 3] = [VaeTiling::Auto, VaeTiling::On, VaeTiling::Off];

    pub fn name(self) -> &'static str {
        match self {
            VaeTiling::Auto => "auto",
            VaeTiling::On => "on",
            VaeTiling::Off => "off",
        }
    }

    pub fn parse(name: &str) -> Option<VaeTiling> {
        Self::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The accepted names, for messages.
    pub fn names() -> String {
        Self::ALL.map(VaeTiling::name).join(", ")
    }

    /// `auto` made concrete for `compat`: `Auto` (size-dependent) in diffusers mode, `Off` in
    /// the modes that reproduce tools which decode whole.
    pub fn for_compat(self, compat: Compat) -> VaeTiling {
        match (self, compat) {
            (VaeTiling::Auto, Compat::A1111 | Compat::ComfyUi) => VaeTiling::Off,
            (tiling, _) => tiling,
        }
    }
}

/// Images recorded before the setting existed were decoded whole.
pub fn recorded_vae_tiling() -> VaeTiling {
    VaeTiling::Off
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_auto_follows_the_compat_mode() {
        for t in VaeTiling::ALL {
            assert_eq!(VaeTiling::parse(t.name()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(t.name()));
        }
        assert_eq!(VaeTiling::parse(" ON "), Some(VaeTiling::On));
        assert_eq!(VaeTiling::parse("yes"), None);
        assert_eq!(VaeTiling::Auto.for_compat(Compat::Diffusers), VaeTiling::Auto);
        assert_eq!(VaeTiling::Auto.for_compat(Compat::A1111), VaeTiling::Off);
        assert_eq!(VaeTiling::On.for_compat(Compat::ComfyUi), VaeTiling::On);
    }
}
