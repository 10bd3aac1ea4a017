"""loso"""
