"""emogs.render: Gaussian rasterisation (gsplat on CUDA, pure PyTorch elsewhere), cameras, PLY."""
from emogs.render.rasterize import RenderOutput, choose_backend, gsplat_available, rasterize

__all__ = ["RenderOutput", "choose_backend", "gsplat_available", "rasterize"]
