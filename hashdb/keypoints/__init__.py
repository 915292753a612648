"""Local binary features as a shareable signal: a bounded set of keypoints per image
(256-bit ORB descriptors with coarse positions), found again in crops, under logos
and after small rotations, where a whole-image hash such as PDQ is not.

    codec.py   the wire form (bytes inside, base64 text at the edges)
    index.py   candidate retrieval: near descriptors vote for the references they belong to
    verify.py  geometric verification, so that descriptor agreement alone never matches

The keypoints are computed by `ingest.keypoints` (OpenCV lives there, not here).
"""

from hashdb.keypoints.codec import KeypointSet
from hashdb.keypoints.verify import Verdict, verify

__all__ = ["KeypointSet", "Verdict", "verify"]
