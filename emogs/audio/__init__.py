"""emogs.audio"""
