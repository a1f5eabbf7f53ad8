"""Inference: faces in photos and video to emotions (detection, crop, model call, drawing, folder evaluation)."""
