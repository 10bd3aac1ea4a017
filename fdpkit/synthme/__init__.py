"""synthme"""
