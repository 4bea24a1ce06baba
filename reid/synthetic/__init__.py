"""Synthetic people, drawn with OpenCV: a crop dataset to train and evaluate on, and camera
footage with ground truth to index and score, both reproducible from a seed and free of licences.

- :mod:`~reid.synthetic.sampling`: who the people are (clothes, hair, bags, build, in colour
  groups that only closer cues tell apart) and how each camera sees (colour, optics, scene);
- :mod:`~reid.synthetic.drawing`: a person in a pose, a crop seen by a camera, a camera's look;
- :mod:`~reid.synthetic.crops`: the crop dataset in Market-1501's layout
  (``tools/make_synthetic.py``);
- :mod:`~reid.synthetic.footage`: multi-camera videos with MOTChallenge ground truth, oracle
  detections and query photos (``tools/make_synthetic_video.py``);
- :mod:`~reid.synthetic.folder`: the one folder protocol both writers follow (staged, manifest
  last, skipped when complete, never over someone else's files).
"""
