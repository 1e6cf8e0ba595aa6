//! Calling the CubeCL kernels directly on hand-built `CubeTensor`s (wgpu and CUDA builds).

use burn::tensor::DType;

/// A CubeCL device and its client, for calling the `CubeBackend` impl and the kernels directly
/// on hand-built `CubeTensor`s (the build is fused, so Burn's dispatch never reaches the bare
/// `CubeBackend`).
pub struct Cube {
    pub device: burn_cubecl::CubeDevice,
    pub client: cubecl::client::Client,
}

impl Cube {
    pub fn new(device: burn_cubecl::CubeDevice) -> Self {
        let client = device.client();
        Cube { device, client }
    }

    /// The CubeCL device behind `Device::wgpu(DeviceKind::DefaultDevice)`.
    #[cfg(feature = "wgpu")]
    pub fn wgpu() -> Self {
        use cubecl::device::{WgpuDevice, WgpuDeviceKind};
        Cube::new(cubecl::Device::Wgpu(WgpuDevice::new(
            WgpuDeviceKind::DefaultDevice,
        )))
    }

    /// The first CUDA device.
    #[cfg(feature = "cuda")]
    pub fn cuda() -> Self {
        Cube::new(cubecl::Device::Cuda(cubecl::device::CudaDevice::new(0)))
    }

    pub fn tensor(
        &self,
        bytes: &[u8],
        shape: burn::tensor::Shape,
        dtype: DType,
    ) -> burn_cubecl::tensor::CubeTensor {
        let handle = self.client.create_from_slice(bytes);
        burn_cubecl::tensor::CubeTensor::new_contiguous(
            self.client.clone(),
            self.device.clone(),
            shape,
            handle,
            dtype,
        )
    }

    /// Contiguous f32 values of `shape`.
    pub fn floats<const D: usize>(
        &self,
        values: &[f32],
        shape: [usize; D],
    ) -> burn_cubecl::tensor::CubeTensor {
        assert_eq!(values.len(), shape.iter().product::<usize>());
        self.tensor(
            bytemuck::cast_slice(values),
            burn::tensor::Shape::new(shape),
            DType::F32,
        )
    }

    /// Packed words as a 1-D `U32` tensor.
    pub fn words(&self, words: &[u32]) -> burn_cubecl::tensor::CubeTensor {
        self.tensor(
            bytemuck::cast_slice(words),
            burn::tensor::Shape::new([words.len()]),
            DType::U32,
        )
    }

    /// Fills freshly freed memory of the client's pool with NaN twice, so that an output the
    /// kernel fails to write reads as NaN.
    pub fn poison(&self, len: usize) {
        let nan = vec![f32::NAN; len];
        for _ in 0..2 {
            let handle = self.client.create_from_slice(bytemuck::cast_slice(&nan));
            let _ = self.client.read_one(handle);
        }
    }
}

/// The values of an f32 `CubeTensor`.
pub fn cube_floats(t: burn_cubecl::tensor::CubeTensor) -> Vec<f32> {
    burn_cubecl::ops::into_data_sync(t)
        .try_into_vec::<f32>()
        .expect("f32 values")
}
