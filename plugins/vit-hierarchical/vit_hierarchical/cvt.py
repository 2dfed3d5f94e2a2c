"""CvT: "Introducing Convolutions to Vision Transformers" (Wu et al., arXiv 2103.15808).

What the paper changes: each of three stages starts with a strided convolutional token
embedding (plus LayerNorm) instead of a patch projection, and attention projects its queries,
keys and values with depth-wise separable convolutions of the token map (``proj_kernel``, with
keys and values at ``kv_proj_stride``, which shrinks the attended sequence).  No positional
embedding, no class token here (mean pooling, as vit-pytorch).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from vit_core.layers import FeedForward, TransformerBlock
from vit_core.validation import check_non_negative_int, check_odd_kernel, check_positive_int, check_probability
from vit_hierarchical.attention import MapProjectionAttention
from vit_hierarchical.stages import ChannelsLast, HierarchicalModel, MapOutput, Stage, TokenMapBlock
from vit_hierarchical.validation import conv_side

STAGE_CHECKS = {"depth": check_non_negative_int, "proj_kernel": check_odd_kernel}
"""The per-stage arguments checked otherwise than as positive ints."""
STAGE_ARGS = ("emb_dim", "emb_kernel", "emb_stride", "proj_kernel", "kv_proj_stride", "heads", "depth", "mlp_mult")


def separable_projection(dim: int, dim_out: int, kernel: int, stride: int) -> nn.Sequential:
    """Depth-wise ``kernel`` convolution (``stride``) -> BatchNorm -> point-wise to ``dim_out``, no biases."""
    return nn.Sequential(
        nn.Conv2d(dim, dim, kernel, stride=stride, padding=kernel // 2, groups=dim, bias=False),
        nn.BatchNorm2d(dim),
        nn.Conv2d(dim, dim_out, 1, bias=False),
    )


class ConvProjectionAttention(MapProjectionAttention):
    """CvT's convolutional projection: queries from a stride-1, keys and values from a
    ``kv_stride`` depth-wise separable convolution of the token map."""

    def __init__(self, dim: int, heads: int, dim_head: int, *, proj_kernel: int, kv_stride: int, **kwargs: Any) -> None:
        super().__init__(dim, heads, dim_head, project_out=True, **kwargs)
        inner = heads * dim_head
        self.to_q = separable_projection(dim, inner, proj_kernel, 1)
        self.to_kv = separable_projection(dim, 2 * inner, proj_kernel, kv_stride)

    def project_map(self, fmap: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return (self.to_q(fmap), *self.to_kv(fmap).chunk(2, dim=1))


class CvT(HierarchicalModel):
    """CvT over ``(batch, channels, height, width)`` images; arguments as vit-pytorch's ``cvt.CvT``.

    Stage ``i`` (``s1_`` .. ``s3_``): a ``emb_kernel`` convolution of stride ``emb_stride`` to
    ``emb_dim`` channels, then ``depth`` blocks of ``heads`` heads (each ``dim_head`` wide) with
    ``proj_kernel`` depth-wise projections (keys and values at ``kv_proj_stride``) and a
    feed-forward ``mlp_mult`` times wider.  Any input size works (convolutions round down).
    The un-pooled last map ``forward_features`` returns is the output of the module ``layers``
    (vit-pytorch's name: ``EsViTTrainer(cvt, hidden_layer="layers")`` reads it).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        s1_emb_dim: int = 64,
        s1_emb_kernel: int = 7,
        s1_emb_stride: int = 4,
        s1_proj_kernel: int = 3,
        s1_kv_proj_stride: int = 2,
        s1_heads: int = 1,
        s1_depth: int = 1,
        s1_mlp_mult: int = 4,
        s2_emb_dim: int = 192,
        s2_emb_kernel: int = 3,
        s2_emb_stride: int = 2,
        s2_proj_kernel: int = 3,
        s2_kv_proj_stride: int = 2,
        s2_heads: int = 3,
        s2_depth: int = 2,
        s2_mlp_mult: int = 4,
        s3_emb_dim: int = 384,
        s3_emb_kernel: int = 3,
        s3_emb_stride: int = 2,
        s3_proj_kernel: int = 3,
        s3_kv_proj_stride: int = 2,
        s3_heads: int = 6,
        s3_depth: int = 10,
        s3_mlp_mult: int = 4,
        dropout: float = 0.0,
        channels: int = 3,
        dim_head: int = 64,
    ) -> None:
        args = locals()
        configs = [{k: args[f"s{i}_{k}"] for k in STAGE_ARGS} for i in (1, 2, 3)]
        for i, config in enumerate(configs, start=1):
            for key, value in config.items():
                STAGE_CHECKS.get(key, check_positive_int)(f"s{i}_{key}", value)
        check_positive_int("channels", channels)
        check_positive_int("dim_head", dim_head)
        check_probability("dropout", dropout)
        super().__init__(channels=channels, rule=self._side_problem)
        self.configs = configs
        self.stem = nn.Identity()
        stages, dim_in, reduction = [], channels, 1
        for config in configs:
            dim, kernel, stride = config["emb_dim"], config["emb_kernel"], config["emb_stride"]
            reduction *= stride
            embed = nn.Sequential(
                ChannelsLast(nn.Conv2d(dim_in, dim, kernel, stride=stride, padding=kernel // 2)), nn.LayerNorm(dim)
            )
            blocks = [
                TokenMapBlock(
                    TransformerBlock(
                        ConvProjectionAttention(
                            dim,
                            config["heads"],
                            dim_head,
                            proj_kernel=config["proj_kernel"],
                            kv_stride=config["kv_proj_stride"],
                            dropout=dropout,
                        ),
                        FeedForward(dim, dim * config["mlp_mult"], dropout),
                        dim,
                    )
                )
                for _ in range(config["depth"])
            ]
            stages.append(Stage(blocks, dim=dim, reduction=reduction, downsample=embed))
            dim_in = dim
        self.stages = nn.ModuleList(stages)
        self.layers = MapOutput()
        self.build_head(num_classes)

    def stage_features(self, state: Tensor) -> Tensor:
        return self.layers(self.map_norm(state))

    def stage_sides(self, side: int) -> list[int]:
        """Map side of each stage."""
        sides = []
        for config in self.configs:
            kernel = config["emb_kernel"]
            side = conv_side(side, kernel, config["emb_stride"], kernel // 2)
            sides.append(side)
        return sides

    def _side_problem(self, side: int, axis: int) -> str | None:
        sides = self.stage_sides(side)
        if all(s >= 1 for s in sides):
            return None
        return f"the strided embeddings leave no tokens (stage maps {', '.join(map(str, sides))})"
