//! Where inference runs and at what precision: the names of the `--device` and `--precision`
//! settings (CLI, `easel.toml`, `/api/v1/config`), parsed and printed in one place.

use serde::{Deserialize, Serialize};

/// An ONNX Runtime execution provider, as users name it: `cpu`, `cuda` or `cuda:N`, `openvino`,
/// `coreml`, `directml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// An NVIDIA GPU by its CUDA index.
    Cuda(u32),
    /// Intel's OpenVINO (CPUs, integrated and discrete GPUs).
    OpenVino,
    /// Apple's Core ML (macOS).
    CoreMl,
    /// DirectML (any DirectX 12 GPU on Windows).
    DirectMl,
}

impl Device {
    /// One of each kind, for listings (`cuda` as device 0).
    pub const KINDS: [Device; 5] = [Device::Cpu, Device::Cuda(0), Device::OpenVino, Device::CoreMl, Device::DirectMl];

    pub fn parse(text: &str) -> Option<Device> {
        let text = text.trim().to_ascii_lowercase();
        match text.as_str() {
            "cpu" => Some(Device::Cpu),
            "cuda" | "gpu" => Some(Device::Cuda(0)),
            "openvino" => Some(Device::OpenVino),
            "coreml" => Some(Device::CoreMl),
            "directml" | "dml" => Some(Device::DirectMl),
            other => other.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(Device::Cuda),
        }
    }

    /// The kind's name (`cuda` for every CUDA index).
    pub fn kind(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda(_) => "cuda",
            Device::OpenVino => "openvino",
            Device::CoreMl => "coreml",
            Device::DirectMl => "directml",
        }
    }

    /// The accepted spellings, for messages.
    pub fn names() -> &'static str {
        "cpu, cuda, cuda:N, openvino, coreml, directml"
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cuda(0) => f.write_str("cuda"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
            other => f.write_str(other.kind()),
        }
    }
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Device::parse(text).ok_or_else(|| format!("unknown device {text:?}; use one of {}", Device::names()))
    }
}

impl Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Device::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("unknown device {text:?}; use one of {}", Device::names())))
    }
}

/// The numeric precision the models run at. `auto` picks what the device runs best with the
/// model at hand; `fp32` is the exact path the parity suites hold to diffusers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Auto,
    Fp32,
    Bf16,
    Fp16,
    Int8,
}

impl Precision {
    pub const ALL: [Precision; 5] = [Precision::Auto, Precision::Fp32, Precision::Bf16, Precision::Fp16, Precision::Int8];

    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }

    pub fn parse(text: &str) -> Option<Precision> {
        let text = text.trim().to_ascii_lowercase();
        let text = match text.as_str() {
            "float32" => "fp32",
            "float16" => "fp16",
            "bfloat16" => "bf16",
            other => other,
        };
        Self::ALL.into_iter().find(|p| p.name() == text)
    }

    /// The accepted names, for messages.
    pub fn names() -> String {
        Self::ALL.map(Precision::name).join(", ")
    }

    /// The precision of a model's graphs as the registry reports it (`float32`, `float16`,
    /// `int8`); `None` for anything else.
    pub fn of_graph(element: &str) -> Option<Precision> {
        match element {
            "float32" => Some(Precision::Fp32),
            "float16" => Some(Precision::Fp16),
            "bfloat16" => Some(Precision::Bf16),
            "int8" => Some(Precision::Int8),
            _ => None,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Precision::parse(text).ok_or_else(|| format!("unknown precision {text:?}; use one of {}", Precision::names()))
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_as_users_write_them() {
        for (text, device) in [("cpu", Device::Cpu), ("CUDA", Device::Cuda(0)), ("cuda:1", Device::Cuda(1)), ("openvino", Device::OpenVino)]
        {
            assert_eq!(Device::parse(text), Some(device), "{text}");
        }
        assert_eq!(Device::parse("cuda:x"), None);
        assert_eq!(Device::parse("tpu"), None);
        assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
        assert_eq!(Device::Cuda(0).to_string(), "cuda");
        assert_eq!(serde_json::to_value(Device::Cuda(3)).unwrap(), serde_json::json!("cuda:3"));
        assert_eq!(serde_json::from_value::<Device>(serde_json::json!("directml")).unwrap(), Device::DirectMl);
        assert!(serde_json::from_value::<Device>(serde_json::json!("npu")).is_err());
    }

    #[test]
    fn precisions_parse_with_the_registry_spellings() {
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.name()), Some(p));
        }
        assert_eq!(Precision::parse("float16"), Some(Precision::Fp16));
        assert_eq!(Precision::of_graph("int8"), Some(Precision::Int8));
        assert_eq!(Precision::of_graph("unknown"), None);
        assert_eq!(Precision::parse("fp64"), None);
    }
}
